"""SkyPilot managed jobs: how a spot job on SkyPilot survives preemption (used by skypilot.py).

compute.spot on a cloud that can mount a bucket (aws, gcp, azure, or any enabled cloud) is
submitted with `sky.jobs.launch`: SkyPilot's jobs controller watches the job, and when the spot
machine is taken back it provisions another and runs the task again. The run directory lives on
a bucket mounted with `mode: MOUNT_CACHED` (writes go to a local cache and are uploaded in the
background: the mode SkyPilot recommends for checkpoints), so the restarted task finds its
checkpoints and the train command resumes from the latest complete one.

The bucket: providers.skypilot.storage_bucket, a name (SkyPilot creates it when missing) or an
s3:// gs:// URI (an existing bucket, optionally with a prefix); by default one derived from the
plan and the local user, `launcher-<job>-<bundle sha[:8]>-<user hash>` (bucket names are global:
the user hash keeps two people's runs of the same bundle apart). It is `persistent`: the run
stays there after the job.

Runpod and Vast cannot do this: SkyPilot 0.14 marks STORAGE_MOUNTING unsupported on both (and
COPY mode only copies in, never back), so a recovered job would start over. They declare
`managed_spot` in `cannot` and fall back to a plain spot cluster (`sky.launch`, use_spot) whose
preemption ends the job; the plan says so. Lambda has no spot at all (SPOT_INSTANCE unsupported).

Follow: `sky.jobs.queue_v2` (status), `sky.jobs.tail_logs`, `sky.jobs.cancel`; fetch copies the
run folder from the bucket (s3/gs through launcher.resume's readers).
"""

from __future__ import annotations

import getpass
import hashlib
import re
from pathlib import Path
from typing import Iterator, Optional

from launcher.backends.base import Handle, JobStatus
from launcher.backends.retry import with_retries
from launcher.errors import ProviderError

MOUNT_PATH = "/launcher-run"
# From SkyPilot 0.14.1's per-cloud _CLOUD_UNSUPPORTED_FEATURES (tests compare with sky itself).
NO_MOUNT = {"runpod": "RunPod", "vast": "Vast"}
NO_SPOT = {"lambda": "Lambda"}
STORE = {"aws": "s3", "gcp": "gcs", "azure": "azure"}
SCHEME_STORE = {"s3": "s3", "gs": "gcs"}
STATES = {"PENDING": "pending", "SUBMITTED": "pending", "STARTING": "pending", "RUNNING": "running",
          "RECOVERING": "running", "WINDING_DOWN": "running", "CANCELLING": "cancelled",
          "SUCCEEDED": "succeeded", "CANCELLED": "cancelled", "FAILED": "failed",
          "FAILED_SETUP": "failed", "FAILED_PRECHECKS": "failed", "FAILED_NO_RESOURCE": "failed",
          "FAILED_CONTROLLER": "failed"}
NO_MANAGED_REASON = ("SkyPilot cannot mount a bucket on {p} (STORAGE_MOUNTING unsupported there), so a "
                     "spot job recovered after preemption could not resume from its checkpoints; spot "
                     "runs as a plain interruptible machine whose preemption ends the job")


def usable(cloud: Optional[str]) -> bool:
    """Managed spot with a checkpoint mount works on this cloud (None: any enabled cloud)."""
    return cloud not in NO_MOUNT and cloud not in NO_SPOT


def _slug(s: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", s.lower())).strip("-")


def storage(plan, run_name: str, cloud: Optional[str]) -> dict:
    """{mount: file_mounts entry, run_dir: path on the node, bucket, prefix, store}."""
    named = plan.job.providers.skypilot.storage_bucket
    if named and "://" in named:
        scheme, _, rest = named.partition("://")
        bucket, _, prefix = rest.partition("/")
        mount = {"source": named.rstrip("/"), "mode": "MOUNT_CACHED"}
        store = SCHEME_STORE.get(scheme, scheme)
    else:
        user = hashlib.sha256(getpass.getuser().encode()).hexdigest()[:4]
        bucket = _slug(named) if named else f"launcher-{_slug(run_name)[:48]}-{user}"
        prefix, store = "", STORE.get(cloud or "")
        mount = {"name": bucket, "mode": "MOUNT_CACHED", "persistent": True}
        if store:
            mount["store"] = store
    return {"mount": mount, "run_dir": f"{MOUNT_PATH}/{run_name}", "bucket": bucket,
            "prefix": "/".join(p for p in (prefix.strip("/"), run_name) if p), "store": store}


def _records(sky, **kw) -> list:
    got = sky.stream_and_get(sky.jobs.queue_v2(refresh=False, **kw))
    return list(got[0] if isinstance(got, tuple) else got or [])


def _state(rec) -> str:
    st = getattr(rec, "status", None)
    return str(getattr(st, "value", st) or "UNKNOWN")


def existing(sky, name: str) -> Optional[int]:
    """A managed job of this name still pending or running: submitting again reuses it."""
    try:
        recs = _records(sky, skip_finished=True, name_match=name)
    except Exception:  # noqa: BLE001 - no controller yet: nothing to reuse
        return None
    for r in recs:
        if getattr(r, "job_name", None) == name and STATES.get(_state(r)) not in ("succeeded", "failed", "cancelled"):
            return r.job_id
    return None


def launch(sky, provider: str, task, name: str) -> int:
    job_id = existing(sky, name)
    if job_id is not None:
        return job_id
    ids, _ = with_retries(provider, lambda: sky.stream_and_get(sky.jobs.launch(task, name=name)),
                          what="sky jobs launch")
    return (ids or [None])[0]


def status(sky, provider: str, handle: Handle) -> JobStatus:
    jid = handle.extra.get("sky_job_id")
    recs = with_retries(provider, lambda: _records(sky, job_ids=[jid]), what="managed job status")
    if not recs:
        return JobStatus("unknown", f"managed job {jid} is not in SkyPilot's jobs queue", True)
    name = _state(recs[0])
    state = STATES.get(name, "unknown")
    rc = getattr(recs[0], "recovery_count", None)
    detail = f"SkyPilot managed job {jid} ({handle.name}): {name}" + (f", recovered {rc}x" if rc else "")
    return JobStatus(state, detail, state in ("succeeded", "failed", "cancelled"))


def logs(sky, handle: Handle, follow: bool) -> Iterator[str]:
    for line in sky.jobs.tail_logs(job_id=handle.extra.get("sky_job_id"), follow=follow, preload_content=False):
        if line is not None:
            yield line.rstrip("\n")


def cancel(sky, provider: str, handle: Handle) -> None:
    """sky.jobs.cancel; a finished or unknown job is left as it is (safe twice)."""
    jid = handle.extra.get("sky_job_id")
    try:
        with_retries(provider, lambda: sky.stream_and_get(sky.jobs.cancel(job_ids=[jid])), what="cancel")
    except ProviderError:
        raise
    except Exception as e:  # noqa: BLE001
        msg = str(e).lower()
        if not any(k in msg for k in ("does not exist", "not found", "already", "terminal", "no job")):
            raise ProviderError(provider, f"cancel failed: {str(e).splitlines()[0][:200]}",
                                hint=f"try `sky jobs cancel {jid}`") from e


def fetch(provider: str, handle: Handle, dest: Path) -> Path:
    """Copy the run folder from the bucket (s3 and gs); other stores get the command to run."""
    where = handle.extra.get("storage") or {}
    store, bucket, prefix = where.get("store"), where.get("bucket"), where.get("prefix", "")
    if store not in ("s3", "gcs"):
        raise ProviderError(provider, f"the run is in bucket {bucket} (store {store or 'chosen by SkyPilot'}), "
                                      "which launcher cannot read here",
                            hint=f"copy {prefix}/ from that bucket with the store's own tool")
    from launcher import resume
    reader = resume._S3(bucket) if store == "s3" else resume._GCS(bucket)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        for key, _size in reader.list(prefix):
            rel = key[len(prefix):].lstrip("/")
            if not rel or ".." in rel.split("/"):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            reader.get(key, target)
    except Exception as e:  # noqa: BLE001 - the client's own error, in one line
        scheme = "s3" if store == "s3" else "gs"
        raise resume._client_error(scheme, f"{scheme}://{bucket}/{prefix}", e) from None
    return dest
