"""vertex: a Vertex AI CustomJob through google-cloud-aiplatform (`aiplatform_v1`).

Rendered as `vertex-custom-job.json`, the CustomJob in its REST JSON form written from plain dicts
(no SDK import on the dry-run path); submit parses that very file with CustomJob.from_json (which
refuses unknown fields and enum values) and sends it. The job: a chief worker pool, plus a
workers pool of compute.nodes-1 replicas for several nodes, each with the machine type and
accelerator from providers.yaml, a prebuilt PyTorch GPU training container and a command that
takes the bundle from the staging bucket through Cloud Storage FUSE (/gcs/BUCKET/...), installs
its requirements and runs the train command with the run directory at
gs://BUCKET/PREFIX/jobs/NAME/run (so checkpoints, metrics and the model land in GCS, a
restarted worker resumes from them, and `fetch` downloads them). Vertex sets CLUSTER_SPEC,
from which the train command finds the chief for multi-node `accelerate launch`.

Secrets: never in container env (it is readable in the console); use Secret Manager from the
job's service account. Logs are in Cloud Logging (resource.type="ml_job"): `logs` says where.
Endpoint: {region}-aiplatform.googleapis.com over REST, or LAUNCHER_VERTEX_ENDPOINT (tests point
it at a stub on 127.0.0.1; google-cloud-storage follows STORAGE_EMULATOR_HOST the same way).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from launcher.backends import managed
from launcher.backends.base import Backend, CredentialCheck, Handle, JobStatus
from launcher.backends.retry import raise_for_fault, with_retries
from launcher.bundle import tar_bundle
from launcher.errors import CredentialsError, ProviderError, UsageError, one_line

PROVIDER = "vertex"
JOB_FILE = "vertex-custom-job.json"
BUNDLE_TAR = "bundle.tar.gz"
IMAGE = "us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310:latest"
CPU_IMAGE = "us-docker.pkg.dev/vertex-ai/training/pytorch-xla.2-4.py310:latest"
CRED_HINT = ("run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
             "to a service-account key file")
# aiplatform_v1.AcceleratorType, as google-cloud-aiplatform 2.7.0 lists it (snapshot 2026-11-29); kept
# here so a dry run needs no SDK; the tests compare it with the installed enum.
ACCELERATORS = ("NVIDIA_TESLA_K80", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P4", "NVIDIA_TESLA_T4",
                "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_L4", "NVIDIA_H100_80GB", "NVIDIA_H100_MEGA_80GB",
                "NVIDIA_H200_141GB", "NVIDIA_B200", "NVIDIA_GB200", "NVIDIA_RTX_PRO_6000",
                "TPU_V2", "TPU_V3", "TPU_V4_POD", "TPU_V5_LITEPOD")
FINISHED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
            "JOB_STATE_PARTIALLY_SUCCEEDED"}
STATES = {"JOB_STATE_QUEUED": "pending", "JOB_STATE_PENDING": "pending", "JOB_STATE_RUNNING": "running",
          "JOB_STATE_SUCCEEDED": "succeeded", "JOB_STATE_FAILED": "failed", "JOB_STATE_CANCELLING": "running",
          "JOB_STATE_CANCELLED": "cancelled", "JOB_STATE_PAUSED": "pending", "JOB_STATE_EXPIRED": "failed",
          "JOB_STATE_UPDATING": "running", "JOB_STATE_PARTIALLY_SUCCEEDED": "failed"}


def endpoint(region: str) -> str:
    return os.environ.get("LAUNCHER_VERTEX_ENDPOINT") or f"{region}-aiplatform.googleapis.com"


class VertexBackend(Backend):
    name = PROVIDER
    extra = "vertex"
    cannot: dict[str, str] = {}

    def __init__(self, provider: str | None = None):
        super().__init__(provider)
        self.credentials = None  # default: google.auth.default()

    # -- credentials and clients ----------------------------------------------------------------
    def check_credentials(self) -> CredentialCheck:
        key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if key:
            return (CredentialCheck(True, f"service-account key {key}") if Path(key).is_file()
                    else CredentialCheck(False, f"GOOGLE_APPLICATION_CREDENTIALS names a missing file: {key}",
                                         CRED_HINT))
        cfg = Path(os.environ.get("CLOUDSDK_CONFIG", Path.home() / ".config" / "gcloud"))
        if (cfg / "application_default_credentials.json").is_file():
            return CredentialCheck(True, f"application default credentials in {cfg}")
        return CredentialCheck(False, "no Google Cloud credentials found", CRED_HINT)

    def _creds(self):
        if self.credentials is None:
            import google.auth
            try:
                self.credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            except google.auth.exceptions.DefaultCredentialsError:
                raise CredentialsError(PROVIDER, "no Google Cloud credentials found", hint=CRED_HINT) from None
        return self.credentials

    def jobs_client(self, region: str):
        from google.cloud.aiplatform_v1 import JobServiceClient
        return JobServiceClient(transport="rest", credentials=self._creds(),
                                client_options={"api_endpoint": endpoint(region)})

    def storage_client(self, project: str):
        from google.cloud import storage
        return storage.Client(project=project, credentials=self._creds())

    def call(self, fn, what: str):
        from google.api_core import exceptions as gexc
        try:
            return with_retries(PROVIDER, fn, what=what)
        except gexc.GoogleAPICallError as e:
            raise_for_fault(PROVIDER, e, CRED_HINT)
            raise ProviderError(PROVIDER, f"{what} failed: {one_line(e)}",
                                hint="check project, region and staging_bucket in providers.vertex") from None

    # -- plan -----------------------------------------------------------------------------------
    def validate(self, plan) -> None:
        super().validate(plan)
        s, c = plan.job.providers.vertex, plan.job.compute
        managed.need(plan, PROVIDER, {"project": "my-project", "staging_bucket": "gs://my-bucket/launcher"})
        managed.check_uri(plan, PROVIDER, "staging_bucket", "gs://")
        choice = managed.choose(plan, PROVIDER, s.machine_type if c.gpu == "none" else None)
        if s.machine_type and c.gpu != "none":  # keep the catalog's accelerator, take the machine
            choice.instance_type, choice.source = s.machine_type, "override"
        if c.gpu != "none" and not choice.accelerator:
            raise UsageError(f"vertex: no accelerator type known for {c.gpu}")
        if choice.accelerator and choice.accelerator not in ACCELERATORS:
            raise UsageError(f"vertex: unknown accelerator {choice.accelerator}",
                             hint="known: " + ", ".join(a for a in ACCELERATORS if a.startswith("NVIDIA")))
        region = managed.region(plan, PROVIDER, s.region, choice.region, "us-central1")
        managed.record(plan, PROVIDER, choice, region)
        plan.settings.update(vertex_region=region, vertex_machine_type=choice.instance_type,
                             vertex_accelerator=choice.accelerator,
                             vertex_accelerator_count=choice.gpus_per_instance if choice.accelerator else 0)

    def locations(self, plan) -> dict:
        bucket, prefix = managed.check_uri(plan, PROVIDER, "staging_bucket", "gs://")
        name = managed.job_name(plan, PROVIDER, limit=128)
        base = "/".join(p for p in (prefix, "jobs", name) if p)
        return {"name": name, "bucket": bucket, "base": base, "bundle": f"{base}/source/{BUNDLE_TAR}",
                "run": f"{base}/run", "output": f"gs://{bucket}/{base}/output"}

    def script(self, plan, loc: dict) -> str:
        fuse = f"/gcs/{loc['bucket']}"
        resume = plan.resume_from
        if resume and resume.startswith("gs://"):
            resume = "/gcs/" + resume[len("gs://"):]
        return "\n".join([
            "set -e",
            "mkdir -p /tmp/launcher-bundle && cd /tmp/launcher-bundle",
            f"python -c \"import tarfile; tarfile.open('{fuse}/{loc['bundle']}').extractall('.')\"",
            "pip install --quiet -r requirements.txt",
            "if [ -s requirements-nodeps.txt ]; then pip install --quiet --no-deps -r requirements-nodeps.txt; fi",
            "exec " + plan.train_command(f"{fuse}/{loc['run']}", resume_from=resume),
        ])

    def request(self, plan) -> dict:
        """The CustomJob in its REST JSON form (proto3 JSON: camelCase, enum names, int64 as
        strings, defaults left out), so CustomJob.to_json(CustomJob.from_json(it)) gives it back."""
        s, c = plan.job.providers.vertex, plan.job.compute
        loc = self.locations(plan)
        machine = {"machineType": plan.settings["vertex_machine_type"]}
        if plan.settings.get("vertex_accelerator"):
            machine.update(acceleratorType=plan.settings["vertex_accelerator"],
                           acceleratorCount=plan.settings["vertex_accelerator_count"])
        env = {**managed.TRAIN_ENV, "LAUNCHER_BUNDLE_SHA256": plan.bundle.sha256}
        image = s.image_uri or (IMAGE if c.gpu != "none" else CPU_IMAGE)
        pool = {"machineSpec": machine, "replicaCount": "1",
                "diskSpec": {"bootDiskType": "pd-ssd", "bootDiskSizeGb": c.disk_gb},
                "containerSpec": {"imageUri": image, "command": ["bash", "-c", self.script(plan, loc)],
                                  "env": [{"name": k, "value": v} for k, v in env.items()]}}
        pools = [pool] + ([{**pool, "replicaCount": str(c.nodes - 1)}] if c.nodes > 1 else [])
        scheduling = {"timeout": f"{int(c.max_hours * 3600)}s"}
        if c.spot:  # a preempted worker restarts the job, which resumes from the run directory
            scheduling.update(restartJobOnWorkerRestart=True, strategy="SPOT")
        spec = {"workerPoolSpecs": pools, "scheduling": scheduling,
                "baseOutputDirectory": {"outputUriPrefix": loc["output"]}}
        if s.service_account:
            spec["serviceAccount"] = s.service_account
        return {"displayName": loc["name"], "jobSpec": spec,
                "labels": {"launcher-job": plan.job.name, "bundle-sha256": plan.bundle.sha256[:32]}}

    def render(self, plan, out: Path) -> list[Path]:
        """The CustomJob JSON (exactly what submit sends) and the bundle tarball; no Google SDK here."""
        out.mkdir(parents=True, exist_ok=True)
        job = self.request(plan)
        counts = [int(w["replicaCount"]) for w in job["jobSpec"]["workerPoolSpecs"]]
        if counts[0] != 1 or sum(counts) != plan.job.compute.nodes or min(counts) < 1:
            raise UsageError(f"vertex: replica counts {counts} do not make {plan.job.compute.nodes} nodes")
        path = out / JOB_FILE
        path.write_text(json.dumps(job, indent=2) + "\n")
        tarball = tar_bundle(plan.bundle, out / BUNDLE_TAR)
        return [path, tarball]

    # -- submit and follow ------------------------------------------------------------------------
    def submit(self, plan, out: Path) -> Handle:
        from google.cloud.aiplatform_v1.types import CustomJob
        path, tarball = self.render(plan, out)
        try:  # the SDK's own parser: unknown fields and enum values are refused here, before any call
            job = CustomJob.from_json(path.read_text())
        except Exception as e:  # noqa: BLE001 - json_format.ParseError and friends
            raise UsageError(f"vertex: the CustomJob is invalid: {one_line(e)}") from None
        s = plan.job.providers.vertex
        region, loc = plan.settings["vertex_region"], self.locations(plan)
        parent = f"projects/{s.project}/locations/{region}"
        client = self.jobs_client(region)
        handle = Handle(PROVIDER, "", plan.job.name, str(plan.run_dir),
                        extra={"region": region, "project": s.project, "bucket": loc["bucket"], "run": loc["run"]})
        from google.cloud.aiplatform_v1.types import ListCustomJobsRequest
        listing = ListCustomJobsRequest(parent=parent, filter=f'display_name="{loc["name"]}"')
        listed = self.call(lambda: list(client.list_custom_jobs(request=listing)), "listing jobs")
        same = [j for j in listed if j.display_name == loc["name"]]
        if same:  # the same plan was submitted before: that job is the answer
            handle.job_id, handle.extra["resource"], handle.extra["reused"] = \
                same[0].name.rsplit("/", 1)[-1], same[0].name, True
            return handle
        bucket = self.storage_client(s.project).bucket(loc["bucket"])
        self.call(lambda: bucket.blob(loc["bundle"]).upload_from_filename(str(tarball)), "uploading the bundle")
        created = self.call(lambda: client.create_custom_job(parent=parent, custom_job=job), "creating the job")
        handle.job_id, handle.extra["resource"] = created.name.rsplit("/", 1)[-1], created.name
        return handle

    def _get(self, handle: Handle):
        client = self.jobs_client(handle.extra["region"])
        return client, self.call(lambda: client.get_custom_job(name=handle.extra["resource"]), "reading the job")

    def status(self, handle: Handle) -> JobStatus:
        _, job = self._get(handle)
        state = job.state.name
        detail = state.replace("JOB_STATE_", "").lower()
        if job.error and job.error.message:
            detail += f": {job.error.message}"
        return JobStatus(STATES.get(state, "unknown"), detail, state in FINISHED)

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        """Vertex writes the job's stdout/stderr to Cloud Logging; say where to read them."""
        job_id, project = handle.job_id, handle.extra["project"]
        query = f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'
        yield f"vertex: the logs of job {job_id} are in Cloud Logging:"
        yield f"  gcloud logging read '{query}' --project {project} --order asc"
        yield (f"  https://console.cloud.google.com/logs/query;query={query.replace(' ', '%20')}"
               f"?project={project}")
        yield (f"  metrics so far: gs://{handle.extra['bucket']}/{handle.extra['run']}/metrics.jsonl "
               "(`launch fetch` downloads the run directory)")

    def cancel(self, handle: Handle) -> None:
        """cancel_custom_job while it runs; a no-op once it finished or is cancelling."""
        from google.api_core import exceptions as gexc
        client, job = self._get(handle)
        if job.state.name in FINISHED | {"JOB_STATE_CANCELLING"}:
            return
        try:
            with_retries(PROVIDER, lambda: client.cancel_custom_job(name=handle.extra["resource"]),
                         what="cancelling the job")
        except gexc.FailedPrecondition:  # it finished meanwhile
            return
        except gexc.GoogleAPICallError as e:
            raise_for_fault(PROVIDER, e, CRED_HINT)
            raise ProviderError(PROVIDER, f"cancelling the job failed: {one_line(e)}") from None

    def fetch(self, handle: Handle, dest: Path) -> Path:
        """The run directory (gs://BUCKET/.../run) into dest."""
        client = self.storage_client(handle.extra["project"])
        prefix = handle.extra["run"].rstrip("/") + "/"
        blobs = self.call(lambda: list(client.list_blobs(handle.extra["bucket"], prefix=prefix)), "listing outputs")
        for b in blobs:
            rel = b.name[len(prefix):]
            if not rel or rel.endswith("/") or ".." in rel.split("/"):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self.call(lambda: b.download_to_filename(str(target)), "downloading outputs")
        return dest

