"""azureml: an Azure ML command job through azure-ai-ml, running the bundle as its code.

Rendered as `azureml-job.yml` (what `az ml job create -f` and `load_job` accept; `code: bundle`
relative to the file), written from plain dicts with pyyaml, so a dry run imports no Azure SDK;
submit loads that very file with azure.ai.ml.load_job (the SDK's schema) and sends it with
jobs.create_or_update. The job: the train command writing into the job's read-write mounted output
`run`, an environment built from the bundle's pinned requirements (a CUDA base image + a conda
file) or the one named in providers.azureml.environment, the compute cluster or a serverless
`resources.instance_type`, `resources.instance_count` = compute.nodes, and a PyTorch distribution.

One process per instance: the train command (`python -m launcher.train.launch`) starts
`accelerate launch` with one worker per GPU itself, reading MASTER_ADDR / NODE_RANK that the
PyTorch distribution sets; Azure starting one copy per GPU would start GPUs^2 workers. The GPU
count travels as LAUNCHER_GPUS_PER_INSTANCE.

Secrets: never in the YAML or environment_variables (readable in the studio); keep HF_TOKEN in
the workspace key vault. Credentials: azure-identity's DefaultAzureCredential (az login, env,
managed identity); tests hand the MLClient a fake credential and a capturing transport.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import yaml

from launcher.backends import managed
from launcher.backends.base import Backend, CredentialCheck, Handle, JobStatus
from launcher.backends.retry import raise_for_fault, with_retries
from launcher.errors import CredentialsError, ProviderError, UsageError, one_line

PROVIDER = "azureml"
JOB_FILE = "azureml-job.yml"
OUTPUT = "run"
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:latest"
CRED_HINT = "run `az login`, or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET"
STATES = {"NotStarted": "pending", "Queued": "pending", "Preparing": "pending", "Provisioning": "pending",
          "Starting": "pending", "Running": "running", "Finalizing": "running", "CancelRequested": "running",
          "NotResponding": "running", "Paused": "pending", "Completed": "succeeded", "Failed": "failed",
          "Canceled": "cancelled"}
FINISHED = {"Completed", "Failed", "Canceled"}
SCHEMA = "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json"


def _quiet_azure() -> None:
    import logging
    import warnings
    warnings.filterwarnings("ignore", module="azure")
    for name in ("azure", "azure.ai.ml", "azure.core.pipeline.policies.http_logging_policy"):
        logging.getLogger(name).setLevel(logging.ERROR)


class AzureMLBackend(Backend):
    name = PROVIDER
    extra = "azureml"
    cannot: dict[str, str] = {}

    def __init__(self, provider: str | None = None):
        super().__init__(provider)
        self.credential = None        # default: azure.identity.DefaultAzureCredential()
        self.client_kwargs: dict = {}  # e.g. transport= (tests), passed to MLClient

    # -- credentials and client ---------------------------------------------------------------
    def check_credentials(self) -> CredentialCheck:
        env = os.environ
        if env.get("AZURE_CLIENT_ID") and env.get("AZURE_TENANT_ID") and (
                env.get("AZURE_CLIENT_SECRET") or env.get("AZURE_FEDERATED_TOKEN_FILE")
                or env.get("AZURE_CLIENT_CERTIFICATE_PATH")):
            return CredentialCheck(True, "service principal from AZURE_CLIENT_ID / AZURE_TENANT_ID")
        if env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"):
            return CredentialCheck(True, "managed identity")
        azure_dir = Path(env.get("AZURE_CONFIG_DIR", Path.home() / ".azure"))
        if (azure_dir / "msal_token_cache.json").exists() or (azure_dir / "msal_token_cache.bin").exists():
            return CredentialCheck(True, f"az login token cache in {azure_dir}")
        return CredentialCheck(False, "no Azure credentials found", CRED_HINT)

    def ml_client(self, settings):
        _quiet_azure()
        from azure.ai.ml import MLClient
        cred = self.credential
        if cred is None:
            from azure.identity import DefaultAzureCredential
            cred = DefaultAzureCredential()
        return MLClient(cred, settings.subscription_id, settings.resource_group, settings.workspace,
                        **self.client_kwargs)

    def call(self, fn, what: str):
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
        try:
            return with_retries(PROVIDER, fn, what=what)
        except ClientAuthenticationError as e:
            raise CredentialsError(PROVIDER, f"the credentials for azureml were refused: {one_line(e)}",
                                   hint=CRED_HINT) from None
        except HttpResponseError as e:
            raise_for_fault(PROVIDER, e, CRED_HINT)
            raise ProviderError(PROVIDER, f"{what} failed: {one_line(e)}",
                                hint="check subscription_id, resource_group, workspace and compute "
                                     "in providers.azureml") from None

    # -- plan ---------------------------------------------------------------------------------
    def validate(self, plan) -> None:
        super().validate(plan)
        s = plan.job.providers.azureml
        managed.need(plan, PROVIDER, {"subscription_id": "00000000-0000-0000-0000-000000000000",
                                      "resource_group": "my-rg", "workspace": "my-workspace"})
        choice = managed.choose(plan, PROVIDER, s.instance_type)
        region = choice.region or "the workspace region"
        managed.record(plan, PROVIDER, choice, region)
        plan.settings["azureml_instance_type"] = choice.instance_type
        plan.settings["azureml_gpus_per_instance"] = choice.gpus_per_instance
        if managed.allowed_regions(plan):
            plan.notes.append(f"azureml: the job runs in workspace {s.workspace}'s region; it must be one "
                              f"of data.regions ({', '.join(managed.allowed_regions(plan))})")
        if s.compute and plan.job.compute.spot:
            plan.notes.append(f"azureml: spot follows cluster {s.compute}'s tier (low-priority or dedicated)")

    def job_dict(self, plan, code: str) -> dict:
        """The command job in the YAML schema that `az ml job create -f` and load_job read."""
        s, c = plan.job.providers.azureml, plan.job.compute
        bundle = plan.bundle.path
        steps = []
        if s.environment:
            env = _ref(s.environment)
            steps.append("pip install -r requirements.txt")
        else:
            reqs = [r for r in (bundle / "requirements.txt").read_text().splitlines() if r.strip()]
            py = f"{sys.version_info.major}.{sys.version_info.minor}"
            env = {"description": "launcher: the bundle's pinned requirements", "image": BASE_IMAGE,
                   "conda_file": {"name": "launcher", "channels": ["conda-forge"],
                                  "dependencies": [f"python={py}", "pip", {"pip": reqs}]}}
        if (bundle / "requirements-nodeps.txt").read_text().strip():
            steps.append("pip install --no-deps -r requirements-nodeps.txt")
        steps.append(plan.train_command("${{outputs.%s}}" % OUTPUT))
        gpus = plan.settings.get("azureml_gpus_per_instance") or 0
        resources: dict = {"instance_count": c.nodes}
        if not s.compute:
            resources["instance_type"] = plan.settings["azureml_instance_type"]
        resources["shm_size"] = "16g"
        d: dict = {
            "$schema": SCHEMA, "type": "command",
            "name": managed.job_name(plan, PROVIDER), "display_name": plan.job.name,
            "experiment_name": plan.job.name, "description": "launcher job; bundle sha256 " + plan.bundle.sha256,
            "tags": {"launcher-job": plan.job.name, "bundle-sha256": plan.bundle.sha256[:32]},
            "code": code, "command": " && ".join(steps), "environment": env,
            "environment_variables": {**managed.TRAIN_ENV, "LAUNCHER_BUNDLE_SHA256": plan.bundle.sha256,
                                      "LAUNCHER_GPUS_PER_INSTANCE": str(gpus)},
        }
        if s.compute:
            d["compute"] = _ref(s.compute)
        d["resources"] = resources
        d["distribution"] = {"type": "pytorch", "process_count_per_instance": 1}
        if c.spot and not s.compute:
            d["queue_settings"] = {"job_tier": "spot"}
        d["limits"] = {"timeout": int(c.max_hours * 3600)}
        d["outputs"] = {OUTPUT: {"type": "uri_folder", "mode": "rw_mount"}}
        return d

    def render(self, plan, out: Path) -> list[Path]:
        """The job YAML (exactly what submit loads and sends), `code` relative to it; no Azure SDK here."""
        out.mkdir(parents=True, exist_ok=True)
        try:
            code = os.path.relpath(plan.bundle.path, out)
        except ValueError:  # another drive
            code = str(plan.bundle.path)
        path = out / JOB_FILE
        path.write_text("# Azure ML command job written by launcher (az ml job create -f " + JOB_FILE + ")\n"
                        + yaml.safe_dump(self.job_dict(plan, code), sort_keys=False))
        return [path]

    # -- submit and follow ----------------------------------------------------------------------
    def submit(self, plan, out: Path) -> Handle:
        from azure.ai.ml import load_job
        from azure.core.exceptions import ResourceNotFoundError
        path = self.render(plan, out)[0]
        _quiet_azure()
        try:  # the SDK's own schema, before any call
            job = load_job(path)
        except Exception as e:  # noqa: BLE001 - ValidationException and friends
            raise UsageError(f"azureml: the job YAML does not load: {one_line(e)}") from None
        s = plan.job.providers.azureml
        ml = self.ml_client(s)
        handle = Handle(PROVIDER, job.name, plan.job.name, str(plan.run_dir),
                        extra={"subscription_id": s.subscription_id, "resource_group": s.resource_group,
                               "workspace": s.workspace})
        def get_or_none():
            try:
                return ml.jobs.get(job.name)
            except ResourceNotFoundError:
                return None
        existing = self.call(get_or_none, "reading the job")
        if existing is not None:  # the same plan was submitted before: that job is the answer
            handle.extra.update(reused=True, studio_url=getattr(existing, "studio_url", None))
            return handle
        created = self.call(lambda: ml.jobs.create_or_update(job), "creating the job")
        handle.extra["studio_url"] = getattr(created, "studio_url", None)
        return handle

    def _client_for(self, handle: Handle):
        class S:  # the three names MLClient needs
            subscription_id = handle.extra["subscription_id"]
            resource_group = handle.extra["resource_group"]
            workspace = handle.extra["workspace"]
        return self.ml_client(S)

    def status(self, handle: Handle) -> JobStatus:
        job = self.call(lambda: self._client_for(handle).jobs.get(handle.job_id), "reading the job")
        raw = _status(job)
        return JobStatus(STATES.get(raw, "unknown"), raw, raw in FINISHED)

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        """follow: jobs.stream (it prints the run's logs itself); otherwise the std logs so far."""
        ml = self._client_for(handle)
        if follow:
            self.call(lambda: ml.jobs.stream(handle.job_id), "streaming logs")
            return
        tmp = Path(tempfile.mkdtemp(prefix="azureml-logs-"))
        try:
            self.call(lambda: ml.jobs.download(handle.job_id, download_path=str(tmp), all=False),
                      "downloading logs")
            for f in sorted(tmp.rglob("std_log*.txt")):
                yield f"==> {f.relative_to(tmp)}"
                yield from f.read_text(errors="replace").splitlines()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def cancel(self, handle: Handle) -> None:
        """begin_cancel while it runs; a no-op once it finished or a cancel was requested."""
        ml = self._client_for(handle)
        job = self.call(lambda: ml.jobs.get(handle.job_id), "reading the job")
        if _status(job) in FINISHED | {"CancelRequested"}:
            return
        self.call(lambda: ml.jobs.begin_cancel(handle.job_id), "cancelling the job")

    def fetch(self, handle: Handle, dest: Path) -> Path:
        """The `run` output (the run directory) into dest."""
        ml = self._client_for(handle)
        tmp = Path(tempfile.mkdtemp(prefix="azureml-out-", dir=dest.parent if dest.parent.exists() else None))
        try:
            self.call(lambda: ml.jobs.download(handle.job_id, download_path=str(tmp), output_name=OUTPUT),
                      "downloading outputs")
            src = next((p for p in tmp.rglob(OUTPUT) if p.is_dir() and p.parent.name == "named-outputs"), tmp)
            shutil.copytree(src, dest, dirs_exist_ok=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest


def _ref(name: str) -> str:
    """An existing workspace asset (compute, environment) as the YAML names it."""
    return name if name.startswith("azureml:") else f"azureml:{name}"


def _status(job) -> str:
    s = getattr(job, "status", None)
    return str(getattr(s, "value", s))
