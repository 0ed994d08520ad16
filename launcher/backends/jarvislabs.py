"""jarvislabs: one GPU instance through the official `jarvislabs` client (SkyPilot has no Jarvislabs).

Artifacts (`--dry-run`): `jarvislabs-request.json` (the `Client().instances.create(...)` arguments)
and `startup.sh`, the startup script the instance runs once it is up. The script carries the
bundle (.tar.gz as base64, checked by sha256), installs the pinned requirements and starts the
same command as local in the background, writing to /home/launcher-run (Jarvislabs keeps /home
across pause/resume).

Submit: `scripts.add(startup.sh, name)` then `instances.create(gpu_type, num_gpus, template,
storage, name, script_id, region, is_spot)`. The instance name derives from the plan
(`<job>-<bundle sha[:8]>`), and an instance of that name that is not destroyed is reused:
submitting twice creates one instance. The lookup runs again before each retry of the create,
so a 5xx whose request the server did act on finds that instance instead of renting a second.
Status is the instance's status. Cancel destroys the instance (safe to repeat: a missing
instance counts as done). Jarvislabs has no log or file API:
logs and fetch go over the SSH command the client reports for the instance (what `jl ssh` does),
which needs an SSH key registered with Jarvislabs (`jl ssh-key add`).

Secrets: Jarvislabs has no secret store. HF_TOKEN is forwarded only when the job needs the hub
(a hub model or push_to_hub), as a startup-script argument at submit time; never in a rendered
file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from launcher.backends import rented
from launcher.backends.base import Backend, CredentialCheck, Handle, JobStatus
from launcher.backends.retry import with_retries
from launcher.errors import CredentialsError, MissingDependencyError, ProviderError, UsageError

REMOTE_DIR = "/home/launcher-run"
REQUEST_FILE = "jarvislabs-request.json"
SCRIPT_FILE = "startup.sh"
REGIONS = {"IN1": "india-chennai-01", "IN2": "india-noida-01", "EU1": "europe-01"}
# Which GPU runs the job follows the shared policy (launcher.backends.rented.fit_gpu: the catalog's
# Jarvislabs GPUs, else the cheapest at least as capable, e.g. T4 -> L4); their catalog names are
# Jarvislabs' own gpu_type names.
_STATES = {"running": "running", "creating": "pending", "resuming": "pending", "pausing": "cancelled",
           "paused": "cancelled", "destroying": "cancelled", "destroyed": "cancelled", "failed": "failed"}


def _needs_hub(job) -> bool:
    ref = job.model.name_or_path
    local = ref.startswith(("pkg://", "/", "./", "../", "~"))
    return bool(job.output.push_to_hub) or not local


class JarvislabsBackend(Backend):
    name = "jarvislabs"
    extra = "jarvislabs"
    cannot = {
        "multi_node": "Jarvislabs rents single instances; for several nodes use sagemaker, azureml, "
                      "vertex, or skypilot (kubernetes, aws, gcp, lambda)",
        "cpu": "Jarvislabs rents GPU instances here; set compute.gpu (e.g. L4, A100-80GB, H100)",
    }
    http_transport = None  # an httpx transport to talk through instead of the network (tests)

    def check_credentials(self) -> CredentialCheck:
        if os.environ.get("JL_API_KEY"):
            return CredentialCheck(True, "JL_API_KEY set")
        cfg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "jl" / "config.toml"
        if cfg.is_file():
            return CredentialCheck(True, f"{cfg} found")
        return CredentialCheck(False, "no Jarvislabs API key",
                               "set JL_API_KEY to a key from jarvislabs.ai > API keys (or run `jl setup`)")

    # -- the request ------------------------------------------------------------------------
    def gpu_type(self, plan) -> str:
        return rented.chosen_gpu(plan)

    def region(self, plan) -> str | None:
        s = plan.job.providers.jarvislabs.region
        allowed = list(getattr(plan.privacy, "regions", None) or plan.job.data.regions or [])
        if s:
            code = s.upper()
            if code not in REGIONS and s not in REGIONS.values():
                raise UsageError(f"providers.jarvislabs.region: unknown region '{s}'",
                                 hint=f"one of {', '.join(REGIONS)}")
            return REGIONS.get(code, s)
        if not allowed:
            return None
        for want in allowed:
            w = want.lower()
            for code, rid in REGIONS.items():
                if code.lower() == w or rid.startswith(w) or (w == "in" and code.startswith("IN")):
                    return rid
        raise UsageError(f"data.regions {allowed}: Jarvislabs has no region there",
                         hint=f"Jarvislabs regions: {', '.join(f'{c} ({r})' for c, r in REGIONS.items())}")

    def instance_name(self, plan) -> str:
        return f"{plan.job.name}-{plan.bundle.sha256[:8]}"[-40:] if plan.bundle else plan.job.name[:40]

    def validate(self, plan) -> None:
        super().validate(plan)
        if plan.job.compute.gpu == "none":
            self.require("cpu")
        self.region(plan)
        plan.settings["jarvislabs_gpu_type"] = rented.fit_gpu(plan, "jarvislabs")
        if plan.job.data.sensitivity != "public":
            plan.notes.append("jarvislabs: no secret store; HF_TOKEN would travel as a startup-script argument")

    def request(self, plan, script_id=None) -> dict:
        c, s = plan.job.compute, plan.job.providers.jarvislabs
        return {"gpu_type": self.gpu_type(plan), "num_gpus": c.gpus, "template": s.template,
                "storage": max(s.storage_gb, 20), "name": self.instance_name(plan), "script_id": script_id,
                "script_args": "", "region": self.region(plan), "is_spot": c.spot}

    def startup_script(self, plan) -> str:
        from launcher.bundle import tar_bundle
        with tempfile.TemporaryDirectory() as td:
            data = tar_bundle(plan.bundle, Path(td) / "b.tar.gz").read_bytes()
        b64 = base64.encodebytes(data).decode()
        cmd = plan.train_command(f"{REMOTE_DIR}/run")
        resume_client = rented.resume_install(plan)  # boto3 / google-cloud-storage for an s3:// gs:// resume
        return (
            "#!/bin/bash\n"
            f"# launcher: {plan.job.name}, bundle sha256 {plan.bundle.sha256}\n"
            "# usage: startup.sh [HF_TOKEN]   (the token, when given, is passed at submit time only)\n"
            f"set -e\nW={REMOTE_DIR}\nmkdir -p $W/bundle $W/run\n"
            '[ -n "$1" ] && export HF_TOKEN="$1"\n'
            "base64 -d > $W/bundle.tar.gz <<'LAUNCHER_BUNDLE'\n" + b64 + "LAUNCHER_BUNDLE\n"
            f'echo "{hashlib.sha256(data).hexdigest()}  $W/bundle.tar.gz" | sha256sum -c -\n'
            "tar -xzf $W/bundle.tar.gz -C $W/bundle\ncd $W/bundle\n"
            "python -m pip install -q -r requirements.txt >> $W/run/train.log 2>&1\n"
            "if [ -s requirements-nodeps.txt ]; then python -m pip install -q --no-deps "
            "-r requirements-nodeps.txt >> $W/run/train.log 2>&1; fi\n"
            + (f"{resume_client} >> $W/run/train.log 2>&1\n" if resume_client else "")
            + f"nohup sh -c '{cmd} >> {REMOTE_DIR}/run/train.log 2>&1; echo $? > {REMOTE_DIR}/run/exit_code' "
            ">/dev/null 2>&1 &\n")

    def render(self, plan, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        script = out / SCRIPT_FILE
        script.write_text(self.startup_script(plan))
        script.chmod(0o755)
        req = out / REQUEST_FILE
        req.write_text(json.dumps({
            "instances.create": self.request(plan, script_id=f"<id of {SCRIPT_FILE} after scripts.add>"),
            "startup_script": SCRIPT_FILE, "run_dir_on_instance": f"{REMOTE_DIR}/run",
            "bundle_sha256": plan.bundle.sha256}, indent=2) + "\n")
        return [req, script]

    # -- the client -------------------------------------------------------------------------------
    def client(self):
        try:
            from jarvislabs import Client
            from jarvislabs.exceptions import AuthError
        except ImportError:
            raise MissingDependencyError("the jarvislabs client", "jarvislabs") from None
        try:
            client = Client()
        except AuthError:
            raise CredentialsError("jarvislabs", "no Jarvislabs API key",
                                   hint=self.check_credentials().hint) from None
        if self.http_transport is not None:
            import httpx
            old = client._transport._client
            client._transport._client = httpx.Client(transport=self.http_transport, headers=old.headers)
            old.close()
        return client

    def _call(self, what: str, fn):
        from jarvislabs.exceptions import AuthError, JarvislabsError
        try:
            return with_retries("jarvislabs", fn, what=what)
        except AuthError:
            raise CredentialsError("jarvislabs", "the credentials for jarvislabs were refused",
                                   hint="set JL_API_KEY to a valid key from jarvislabs.ai") from None
        except JarvislabsError as e:
            raise ProviderError("jarvislabs", f"{what}: {e}") from None

    def _find(self, client, name: str):
        for inst in self._call("list instances", client.instances.list):
            if inst.name == name and str(inst.status).lower() not in ("destroyed", "destroying", "failed"):
                return inst
        return None

    def submit(self, plan, out: Path) -> Handle:
        self.render(plan, out)
        client = self.client()
        name = self.instance_name(plan)
        inst = self._find(client, name)
        if inst is None:
            script = (out / SCRIPT_FILE).read_text()
            self._call("add startup script", lambda: client.scripts.add(script, name=name))
            scripts = self._call("list scripts", client.scripts.list)
            sid = next((s.script_id for s in reversed(scripts) if s.script_name == name), None)
            if sid is None:
                raise ProviderError("jarvislabs", "the startup script was not stored", hint="try again")
            req = self.request(plan, script_id=str(sid))
            token = os.environ.get("HF_TOKEN")
            if token and _needs_hub(plan.job):
                req["script_args"] = token
            inst = self._call("create instance", lambda: self._find(client, name) or client.instances.create(**req))
        return Handle("jarvislabs", str(inst.machine_id), plan.job.name, str(plan.run_dir.resolve()),
                      extra={"machine_id": inst.machine_id, "instance_name": name,
                             "region": getattr(inst, "region", None), "remote_run_dir": f"{REMOTE_DIR}/run"})

    def status(self, handle: Handle) -> JobStatus:
        from jarvislabs.exceptions import NotFoundError
        client = self.client()
        try:
            inst = self._call("status", lambda: client.instances.get(int(handle.job_id)))
        except ProviderError as e:
            if isinstance(e.__context__, NotFoundError):
                return JobStatus("unknown", f"instance {handle.job_id} is gone (destroyed)", True)
            raise
        raw = str(inst.status)
        state = _STATES.get(raw.lower(), "unknown")
        return JobStatus(state, f"instance {handle.job_id} {raw} (training log: {REMOTE_DIR}/run/train.log)",
                         state in ("failed", "cancelled"))

    def cancel(self, handle: Handle) -> None:
        """Destroy the instance; a missing instance means it is already done."""
        from jarvislabs.exceptions import NotFoundError
        client = self.client()
        try:
            self._call("destroy", lambda: client.instances.destroy(int(handle.job_id)))
        except ProviderError as e:
            if isinstance(e.__context__, NotFoundError) or "not found" in str(e).lower():
                return
            raise

    def _ssh(self, handle: Handle) -> str:
        inst = self._call("status", lambda: self.client().instances.get(int(handle.job_id)))
        if not inst.ssh_command:
            raise ProviderError("jarvislabs", f"instance {handle.job_id} reports no SSH access",
                                hint="add a key with `jl ssh-key add`, then try again")
        return inst.ssh_command

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        from jarvislabs.ssh import harden_ssh_parts, split_ssh_command
        cmd = harden_ssh_parts(split_ssh_command(self._ssh(handle)))
        cmd.append(f"tail -n +1 {'-F ' if follow else ''}{REMOTE_DIR}/run/train.log")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                yield line.rstrip("\n")
        finally:
            proc.kill()

    def fetch(self, handle: Handle, dest: Path) -> Path:
        from jarvislabs.ssh import build_scp_command
        dest.mkdir(parents=True, exist_ok=True)
        cmd = build_scp_command(self._ssh(handle), source=f"{REMOTE_DIR}/run/.", dest=str(dest),
                                upload=False, recursive=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise ProviderError("jarvislabs", f"copy failed: {(r.stderr.strip().splitlines() or [''])[-1][:200]}")
        return dest
