"""runpod, vast, and any SkyPilot cloud (provider `skypilot`, cloud from providers.skypilot.cloud).

The artifact is a SkyPilot task YAML (`sky-task.yaml`), written as a plain dict so a dry-run
never imports SkyPilot (2-3.5 s):
- workdir: the bundle folder (SkyPilot syncs it to ~/sky_workdir on every node);
- setup: `pip install -r requirements.txt` then `--no-deps -r requirements-nodeps.txt`;
- run: `plan.train_command("../launcher-run")`, the same command as local; it reads
  SKYPILOT_NODE_RANK / SKYPILOT_NODE_IPS / SKYPILOT_NUM_GPUS_PER_NODE and starts
  `accelerate launch --num_machines --machine_rank --main_process_ip` (launcher/train/launch.py);
- resources: accelerators "T4:1", use_spot, disk_size, infra "<cloud>[/<region>]" (several
  allowed regions become `any_of`), autostop {idle_minutes: 60, down: true};
- secrets: `{HF_TOKEN: null, WANDB_API_KEY: null}`: names only. Values are filled from the
  environment with `task.update_secrets` at submit time and never written to disk.

Privacy choices, recorded in plan.json settings and in the YAML header:
- Runpod Secure vs Community Cloud: SkyPilot 0.14's Runpod catalog lists Secure Cloud offers
  only (its catalog fetcher skips Community hosts, and instance types are `Nx_GPU_SECURE`), so
  every Runpod launch through SkyPilot lands on Secure Cloud. Asking for Community
  (providers.runpod.cloud_type=community) is honoured as "Secure" with a note: never less private
  than asked.
- Vast datacenter-only hosts: the task-level config override `config: {vast: {datacenter_only:
  true}}` (one of SkyPilot's OVERRIDEABLE_CONFIG_KEYS_IN_TASK); SkyPilot then filters offers with
  `datacenter=true`.

GPU: the shared policy (launcher.backends.rented.fit_gpu): a GPU the provider's catalog lacks
becomes the cheapest one at least as capable (runpod/vast T4 -> RTX4090/RTX3090), with a note.
A remote --resume-from s3:// gs:// URI: setup also installs boto3 / google-cloud-storage.

Spot (compute.spot): SkyPilot managed jobs with the run directory on a mounted bucket, so a
preempted job is restarted and resumes from its checkpoints (launcher/backends/skyjobs.py);
Runpod and Vast cannot mount a bucket, so there spot is a plain interruptible cluster (declared
in `cannot` as managed_spot, and said in the plan notes).

Outputs (on-demand): the run directory lives on the head node at ~/launcher-run; `fetch` copies it back with
rsync over the SSH alias SkyPilot writes for each cluster (`rsync -az CLUSTER:launcher-run/ DEST`,
as SkyPilot documents for cluster files). Runpod and Vast offer no bucket SkyPilot can mount, so a
bucket mount would not work on the two providers this serves most. The cluster tears itself down
after 60 idle minutes (autostop down=true): fetch before that.

Multi-node: SkyPilot marks Runpod and Vast single-node only; `nodes > 1` there is refused with
that reason. kubernetes, aws, gcp, azure and lambda take `num_nodes`.
"""

from __future__ import annotations

import copy
import os
import shlex
import subprocess
from pathlib import Path
from typing import Iterator

import yaml

from launcher.backends import rented, skyjobs
from launcher.backends.base import SECRET_ENV, Backend, CredentialCheck, Handle, JobStatus
from launcher.backends.retry import with_retries
from launcher.errors import CapabilityError, CredentialsError, MissingDependencyError, ProviderError

TASK_FILE = "sky-task.yaml"
REMOTE_RUN_DIR = "launcher-run"          # relative to the node's home (~/sky_workdir/../)
AUTOSTOP_MINUTES = 60
MULTI_NODE_CLOUDS = ("kubernetes", "aws", "gcp", "azure", "lambda")
_SINGLE_NODE_REASON = ("SkyPilot supports only single-node clusters on {p}; for several nodes use "
                       "sagemaker, azureml, vertex, or skypilot with providers.skypilot.cloud set to "
                       "kubernetes, aws, gcp or lambda")

# Job GPU names -> SkyPilot accelerator names (per-cloud exceptions below).
_ACCEL = {"A100-40GB": "A100", "RTX6000Ada": "RTX6000-Ada"}
_ACCEL_CLOUD = {"runpod": {"H200": "H200-SXM", "A100-40GB": "A100-80GB"}}

_CREDS = {
    "runpod": ("~/.runpod/config.toml", "run `pip install runpod && runpod config` and paste your API key "
               "(SkyPilot reads ~/.runpod/config.toml; RUNPOD_API_KEY alone is not enough)"),
    "vast": ("~/.config/vastai/vast_api_key", "run `mkdir -p ~/.config/vastai && echo KEY > "
             "~/.config/vastai/vast_api_key` with your key from cloud.vast.ai/account"),
}
_SKY_CLOUD_CLASS = {"runpod": "RunPod", "vast": "Vast", "aws": "AWS", "gcp": "GCP", "azure": "Azure",
                    "lambda": "Lambda", "kubernetes": "Kubernetes"}
_STATES = {"INIT": "pending", "PENDING": "pending", "SETTING_UP": "pending", "RUNNING": "running",
           "SUCCEEDED": "succeeded", "FAILED": "failed", "FAILED_SETUP": "failed",
           "FAILED_DRIVER": "failed", "CANCELLED": "cancelled"}


class _Dumper(yaml.SafeDumper):
    """Multi-line scripts (setup, run) as literal blocks, as people write them."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


class SkyPilotBackend(Backend):
    name = "skypilot"
    extra = "skypilot"

    def __init__(self, provider: str | None = None):
        super().__init__(provider)
        if self.provider in ("runpod", "vast"):
            self.extra = self.provider
            self.cannot = {"multi_node": _SINGLE_NODE_REASON.format(p=self.provider.capitalize()),
                           "managed_spot": skyjobs.NO_MANAGED_REASON.format(p=skyjobs.NO_MOUNT[self.provider])}
        else:
            self.cannot = {}

    # -- where and how --------------------------------------------------------------------
    def cloud(self, plan=None) -> str | None:
        if self.provider in ("runpod", "vast"):
            return self.provider
        return plan.job.providers.skypilot.cloud if plan is not None else None

    def cluster_name(self, plan) -> str:
        """Derived from the plan: submitting the same plan twice finds the same cluster."""
        return f"{plan.job.name}-{plan.bundle.sha256[:8]}"[:60]

    def decisions(self, plan) -> dict:
        job, cloud = plan.job, self.cloud(plan)
        d: dict = {}
        if cloud == "runpod":
            asked = job.providers.runpod.cloud_type
            policy = plan.settings.get("runpod_cloud_type")
            if policy is None and asked == "auto" and job.data.sensitivity != "public":
                policy = "secure"
            d["runpod_cloud_type"] = "secure"
            d["runpod_cloud_type_reason"] = (
                f"asked: {asked}, privacy policy: {policy or 'any'}; SkyPilot 0.14 rents Runpod "
                "Secure Cloud only (its catalog lists SECURE instance types)")
        if cloud == "vast":
            dc = job.providers.vast.datacenter_only
            if dc is None:
                dc = bool(plan.settings.get("vast_datacenter_only")) or job.data.sensitivity != "public"
            d["vast_datacenter_only"] = bool(dc)
        return d

    def validate(self, plan) -> None:
        cloud = self.cloud(plan)
        if plan.job.compute.nodes > 1:
            self.require("multi_node")
            if cloud in ("runpod", "vast"):  # provider skypilot pointed at a single-node cloud
                raise CapabilityError(self.provider, "multi-node",
                                      _SINGLE_NODE_REASON.format(p=cloud.capitalize()))
        plan.settings.update(self.decisions(plan))
        rented.fit_gpu(plan, cloud or self.provider)
        if plan.job.compute.spot:
            if cloud in skyjobs.NO_SPOT:
                raise CapabilityError(self.provider, "spot", f"SkyPilot has no spot instances on {cloud}",
                                      hint="set compute.spot=false or pick another cloud")
            plan.settings["skypilot_managed_spot"] = skyjobs.usable(cloud)
            if not skyjobs.usable(cloud):
                plan.notes.append(f"{self.provider}: spot without recovery: "
                                  + skyjobs.NO_MANAGED_REASON.format(p=skyjobs.NO_MOUNT[cloud])
                                  + "; for recovered spot use provider skypilot with cloud aws, gcp or azure")
            else:
                plan.notes.append(f"{self.provider}: spot runs as a SkyPilot managed job (recovered after "
                                  "preemption) with the run directory on a mounted bucket")
        if cloud == "runpod" and plan.job.providers.runpod.cloud_type == "community":
            plan.notes.append("runpod: Community Cloud asked, but SkyPilot rents Secure Cloud only: "
                              "using Secure Cloud (more private, higher price)")

    # -- the artifact -----------------------------------------------------------------------
    def managed(self, plan) -> bool:
        """Spot as a SkyPilot managed job (see skyjobs)?"""
        return bool(plan.job.compute.spot) and skyjobs.usable(self.cloud(plan))

    def task_config(self, plan) -> dict:
        job, c = plan.job, plan.job.compute
        cloud, managed = self.cloud(plan), self.managed(plan)
        res: dict = {"disk_size": c.disk_gb, "use_spot": c.spot}
        if managed:   # the jobs controller recovers a preempted machine; the task restarts and resumes
            res["job_recovery"] = {"strategy": "FAILOVER", "max_restarts_on_errors": 0}
        else:
            res["autostop"] = {"idle_minutes": AUTOSTOP_MINUTES, "down": True}
        gpu = rented.chosen_gpu(plan)
        if gpu != "none":
            name = _ACCEL_CLOUD.get(cloud or "", {}).get(gpu) or _ACCEL.get(gpu, gpu)
            res["accelerators"] = f"{name}:{c.gpus}"
        else:
            res["cpus"] = "4+"
        regions = self._regions(plan)
        if cloud and len(regions) > 1:
            res["any_of"] = [{"infra": f"{cloud}/{r}"} for r in regions]
        elif cloud:
            res["infra"] = f"{cloud}/{regions[0]}" if regions else cloud
        cfg: dict = {
            "name": job.name,
            "workdir": str(plan.bundle.path.resolve()),
            "num_nodes": c.nodes,
            "resources": res,
            "envs": {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
                     "LAUNCHER_BUNDLE_SHA256": plan.bundle.sha256},
            "secrets": {k: None for k in SECRET_ENV},
            "setup": ("set -e\npython -m pip install -q --upgrade pip\n"
                      "python -m pip install -q -r requirements.txt\n"
                      "if [ -s requirements-nodeps.txt ]; then "
                      "python -m pip install -q --no-deps -r requirements-nodeps.txt; fi\n"
                      + (rented.resume_install(plan) + "\n" if rented.resume_install(plan) else "")),
            "run": f"set -e\nmkdir -p ../{REMOTE_RUN_DIR}\n"
                   f"{plan.train_command('../' + REMOTE_RUN_DIR)}\n",
        }
        if managed:   # the run directory on the bucket: a restarted task finds its checkpoints
            where = skyjobs.storage(plan, self.cluster_name(plan), cloud)
            cfg["file_mounts"] = {skyjobs.MOUNT_PATH: where["mount"]}
            cfg["run"] = f"set -e\nmkdir -p {where['run_dir']}\n{plan.train_command(where['run_dir'])}\n"
        if plan.settings.get("vast_datacenter_only"):
            cfg["config"] = {"vast": {"datacenter_only": True}}
        return cfg

    def _regions(self, plan) -> list[str]:
        s = plan.job.providers.skypilot.region if self.provider == "skypilot" else None
        if s:
            return [s]
        return list(getattr(plan.privacy, "regions", None) or plan.job.data.regions or [])

    def render(self, plan, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        cfg = self.task_config(plan)
        by_hand = (f"sky jobs launch -n {self.cluster_name(plan)} {TASK_FILE}" if self.managed(plan)
                   else f"sky launch -c {self.cluster_name(plan)} {TASK_FILE}")
        header = [f"# SkyPilot task for {plan.job.name} on {self.cloud(plan) or 'any enabled cloud'}",
                  f"# bundle sha256 {plan.bundle.sha256}",
                  f"# submit: launch --provider {self.provider} JOB   (or: {by_hand})"]
        if "runpod_cloud_type" in plan.settings:
            header.append("# runpod cloud type: SECURE (" + plan.settings["runpod_cloud_type_reason"] + ")")
        if "vast_datacenter_only" in plan.settings:
            header.append(f"# vast datacenter-only hosts: {plan.settings['vast_datacenter_only']}")
        if self.managed(plan):
            header.append(f"# spot: a SkyPilot managed job (recovered after preemption); run directory on "
                          f"the mounted bucket at {skyjobs.MOUNT_PATH}")
        header.append("# secrets are names only; their values come from the environment at submit time")
        path = out / TASK_FILE
        path.write_text("\n".join(header) + "\n" + yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, width=200))
        return [path]

    # -- credentials --------------------------------------------------------------------------
    def check_credentials(self) -> CredentialCheck:
        if self.provider in _CREDS:
            path, hint = _CREDS[self.provider]
            if Path(os.path.expanduser(path)).is_file():
                return CredentialCheck(True, f"{path} found")
            return CredentialCheck(False, f"{path} not found", hint)
        return CredentialCheck(True, "SkyPilot checks the cloud's credentials at submit (`sky check`)")

    def _sky(self):
        try:
            import sky
        except ImportError:
            raise MissingDependencyError("SkyPilot", self.extra) from None
        return sky

    def _check_cloud(self, cloud: str | None) -> None:
        """SkyPilot's own credential check for the cloud, in this process (no API server)."""
        if not cloud or cloud not in _SKY_CLOUD_CLASS:
            return
        from sky import clouds
        ok, reason = getattr(clouds, _SKY_CLOUD_CLASS[cloud])._check_compute_credentials()
        if not ok:
            text = reason if isinstance(reason, str) else "; ".join(f"{k}: {v}" for k, v in (reason or {}).items())
            first = " ".join(text.split())[:300]
            raise CredentialsError(self.provider, f"SkyPilot cannot use {cloud}: {first}",
                                   hint=_CREDS.get(cloud, ("", "run `sky check " + cloud + "`"))[1])

    # -- submit and follow --------------------------------------------------------------------
    def build_task(self, plan, out: Path):
        """The sky.Task for this plan, with secrets filled from the environment (never on disk)."""
        sky = self._sky()
        cfg = self.task_config(plan)
        present = {k: os.environ[k] for k in SECRET_ENV if os.environ.get(k)}
        cfg["secrets"] = {k: "" for k in present}
        if not cfg["secrets"]:
            del cfg["secrets"]
        task = sky.Task.from_yaml_config(copy.deepcopy(cfg))
        if present:
            task.update_secrets(present)
        return task

    def submit(self, plan, out: Path) -> Handle:
        self.render(plan, out)
        sky = self._sky()
        cloud = self.cloud(plan)
        self._check_cloud(cloud)
        task = self.build_task(plan, out)
        cluster = self.cluster_name(plan)
        if self.managed(plan):
            where = skyjobs.storage(plan, cluster, cloud)
            job_id = skyjobs.launch(sky, self.provider, task, cluster)
            return Handle(self.provider, str(job_id), plan.job.name, str(plan.run_dir.resolve()),
                          extra={"managed": True, "sky_job_id": job_id, "job_name": cluster, "cloud": cloud,
                                 "remote_run_dir": where["run_dir"],
                                 "storage": {k: where[k] for k in ("bucket", "prefix", "store")}})
        existing = self._existing_job(cluster, plan.job.name)
        if existing is not None:
            job_id = existing
        else:
            job_id, _ = with_retries(self.provider, lambda: sky.stream_and_get(
                sky.launch(task, cluster_name=cluster, down=True,
                           idle_minutes_to_autostop=AUTOSTOP_MINUTES)), what="sky launch")
        return Handle(self.provider, cluster, plan.job.name, str(plan.run_dir.resolve()),
                      extra={"cluster": cluster, "sky_job_id": job_id, "cloud": cloud,
                             "remote_run_dir": f"~/{REMOTE_RUN_DIR}"})

    def _existing_job(self, cluster: str, job_name: str) -> int | None:
        """A job of this name already queued or done on this plan's cluster: submit is idempotent."""
        sky = self._sky()
        try:
            if not sky.stream_and_get(sky.status(cluster_names=[cluster])):
                return None
            jobs = sky.stream_and_get(sky.queue(cluster))
        except Exception:  # noqa: BLE001 - no cluster (or no server yet): nothing to reuse
            return None
        for j in jobs or []:
            st = str(getattr(j.status, "value", j.status))
            if j.job_name == job_name and st not in ("FAILED", "FAILED_SETUP", "FAILED_DRIVER", "CANCELLED"):
                return j.job_id
        return None

    def _job_id(self, handle: Handle):
        return handle.extra.get("sky_job_id")

    def status(self, handle: Handle) -> JobStatus:
        sky = self._sky()
        if handle.extra.get("managed"):
            return skyjobs.status(sky, self.provider, handle)
        cluster = handle.extra.get("cluster", handle.job_id)
        try:
            st = with_retries(self.provider, lambda: sky.stream_and_get(
                sky.job_status(cluster, [self._job_id(handle)])), what="job status")
        except Exception as e:  # noqa: BLE001
            if "does not exist" in str(e) or "not found" in str(e).lower():
                return JobStatus("unknown", f"cluster {cluster} is gone (autostop tears it down "
                                            f"{AUTOSTOP_MINUTES} min after the job)", True)
            raise
        raw = next(iter((st or {}).values()), None)
        name = str(getattr(raw, "value", raw)) if raw is not None else "UNKNOWN"
        state = _STATES.get(name, "unknown")
        return JobStatus(state, f"SkyPilot job {self._job_id(handle)} on {cluster}: {name}",
                         state in ("succeeded", "failed", "cancelled"))

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        sky = self._sky()
        if handle.extra.get("managed"):
            yield from skyjobs.logs(sky, handle, follow)
            return
        cluster = handle.extra.get("cluster", handle.job_id)
        lines = sky.tail_logs(cluster, self._job_id(handle), follow, preload_content=False)
        for line in lines:
            if line is not None:
                yield line.rstrip("\n")

    def cancel(self, handle: Handle) -> None:
        """Cancel the job; safe to repeat (a finished or missing job is left as it is). The cluster
        goes down by itself after the autostop idle time."""
        sky = self._sky()
        if handle.extra.get("managed"):
            return skyjobs.cancel(sky, self.provider, handle)
        cluster = handle.extra.get("cluster", handle.job_id)
        try:
            with_retries(self.provider, lambda: sky.stream_and_get(
                sky.cancel(cluster, job_ids=[self._job_id(handle)])), what="cancel")
        except ProviderError:
            raise
        except Exception as e:  # noqa: BLE001
            msg = str(e).lower()
            if not any(k in msg for k in ("does not exist", "not found", "already", "terminal", "no job")):
                raise ProviderError(self.provider, f"cancel failed: {str(e).splitlines()[0][:200]}",
                                    hint=f"try `sky cancel {cluster} {self._job_id(handle)}`") from e

    def fetch(self, handle: Handle, dest: Path) -> Path:
        if handle.extra.get("managed"):
            return skyjobs.fetch(self.provider, handle, dest)
        cluster = handle.extra.get("cluster", handle.job_id)
        dest.mkdir(parents=True, exist_ok=True)
        cmd = ["rsync", "-az", f"{cluster}:{REMOTE_RUN_DIR}/", f"{dest}/"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        except FileNotFoundError:
            raise ProviderError(self.provider, "rsync is not installed here",
                                hint="install rsync, or copy with `sky rsync`/scp from the cluster") from None
        if r.returncode != 0:
            raise ProviderError(self.provider, f"could not copy the run from {cluster}: "
                                f"{(r.stderr.strip().splitlines() or [''])[-1][:200]}",
                                hint=f"is the cluster still up? `sky status {cluster}`; "
                                     f"command: {' '.join(shlex.quote(c) for c in cmd)}")
        return dest
