"""`--resume-from`: continue a run that started anywhere.

A run directory has the same layout on every provider (launcher.train.state), so resuming is
finding its newest complete checkpoint and handing that folder to the training program:

- a local run directory, one of its `checkpoints/step-N` folders, or a folder fetched back from a
  provider (`launch fetch`, `aws s3 sync`, ...) with the run a level or two down;
- `s3://bucket/prefix` (boto3; `AWS_ENDPOINT_URL` points it at an S3-compatible endpoint);
- `gs://bucket/prefix` (google-cloud-storage; `STORAGE_EMULATOR_HOST` points it at an emulator).

For a URI only the newest complete checkpoint (and the run's metrics.jsonl) is downloaded; a
checkpoint whose files do not match its COMPLETE manifest is skipped for the next older one.

The CLI calls `resolve()`; the training program calls `fetch_uri()` when a remote provider was
given the URI itself (this module ships in the bundle: standard library, launcher.errors and
launcher.train.state only; boto3 / google-cloud-storage are imported when a URI is fetched).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable, Iterable, Optional

from launcher.errors import CredentialsError, LauncherError, ProviderError, UsageError, first_line
from launcher.train import state as st

SCHEMES = ("s3", "gs")
# Providers whose job runs with an identity that reads its own cloud's buckets.
NATIVE = {"sagemaker": "s3", "vertex": "gs"}
_STEP_RE = re.compile(r"(?:^|/)(step-\d+)/(.+)$")
HINT_LOCAL = ("name a run directory, one of its checkpoints/step-N folders, or a folder fetched back "
              "from a provider")


def split_uri(uri: str) -> tuple[str, str, str]:
    """'s3://bucket/a/b' -> ('s3', 'bucket', 'a/b')."""
    m = re.fullmatch(r"([a-z0-9]+)://([^/]+)/?(.*)", uri.strip())
    if not m:
        raise UsageError(f"--resume-from {uri}: not a folder or a scheme://bucket/prefix URI")
    scheme, bucket, prefix = m.groups()
    if scheme not in SCHEMES:
        raise UsageError(f"--resume-from {uri}: unsupported scheme '{scheme}://'",
                         hint="use a local folder, s3:// or gs://")
    return scheme, bucket, prefix.rstrip("/")


def resolve(ref: Optional[str], provider: str, run_dir: Path, dry_run: bool = False,
            notes: Optional[list] = None) -> Optional[str]:
    """What the job's command gets as --resume-from, checked before anything runs.

    local: a local checkpoint folder (URIs are downloaded first, except in a dry run).
    remote: s3:// and gs:// URIs pass through (the job reads them where it runs); a local
    folder cannot be read there, so it is refused with what to do instead."""
    if not ref:
        return None
    if "://" in ref:
        split_uri(ref)
        if provider == "local":
            if dry_run:
                return ref
            return str(_checkpoint_in(fetch_uri(ref, run_dir / ".resume-source"), ref))
        scheme = ref.split("://", 1)[0]
        if notes is not None and NATIVE.get(provider) != scheme:
            notes.append(f"resume: the job downloads {ref} itself; it needs read access there "
                         f"(credentials for {scheme}:// on the {provider} machine)")
        return ref
    path = Path(ref).expanduser().resolve()
    if not path.exists():
        raise UsageError(f"--resume-from {ref}: no such folder", hint=HINT_LOCAL)
    ckpt = _checkpoint_in(path, ref)
    if provider != "local":
        raise UsageError(f"--resume-from {ref}: {provider} cannot read a folder on this machine",
                         hint=f"copy the run to a bucket (aws s3 sync {ref} s3://BUCKET/run, or "
                              f"gcloud storage rsync -r {ref} gs://BUCKET/run) and pass that URI")
    return str(ckpt)


def _checkpoint_in(path: Path, ref: str) -> Path:
    ckpt = st.find_checkpoint(path)
    if ckpt is None:
        raise UsageError(f"--resume-from {ref}: no complete checkpoint there", hint=HINT_LOCAL)
    return ckpt


# ---- remote ------------------------------------------------------------------------------
def fetch_uri(uri: str, dest: Path) -> Path:
    """Download the newest complete checkpoint under `uri` into `dest` (a run directory);
    returns `dest`. Raises LauncherError subclasses with one clear line."""
    scheme, bucket, prefix = split_uri(uri)
    store = _S3(bucket) if scheme == "s3" else _GCS(bucket)
    try:
        keys = dict(store.list(prefix))
        return _download_latest(uri, keys, store.get, dest)
    except LauncherError:
        raise
    except Exception as e:  # noqa: BLE001 - the client's own error, told in one line
        raise _client_error(scheme, uri, e) from None


def _download_latest(uri: str, keys: dict[str, int], get: Callable[[str, Path], None], dest: Path) -> Path:
    """keys: object key -> size. Try checkpoints newest first; keep the first that is whole."""
    groups: dict[str, dict[str, str]] = {}  # checkpoint prefix -> {relative file: key}
    for key in keys:
        m = _STEP_RE.search(key)
        if m:
            base = key[: m.start(2)].rstrip("/")
            groups.setdefault(base, {})[m.group(2)] = key
    candidates = sorted((int(base.rsplit("step-", 1)[1]), base) for base, files in groups.items()
                        if st.COMPLETE in files and st.STATE_FILE in files)
    if not candidates:
        raise UsageError(f"--resume-from {uri}: no complete checkpoint there", hint=HINT_LOCAL)
    for step, base in reversed(candidates):
        folder = dest / st.CKPT_DIR / st.checkpoint_name(step)
        if folder.exists() and st._checkpoint_ok(folder)[0]:
            return dest  # already here (another process of this job, or an earlier try)
        shutil.rmtree(folder, ignore_errors=True)
        tmp = folder.with_name(".tmp-" + folder.name)
        shutil.rmtree(tmp, ignore_errors=True)
        for rel, key in groups[base].items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            get(key, target)
        ok, why = st._checkpoint_ok(tmp)
        if not ok:
            st.warn(f"skipping incomplete checkpoint {uri.split('://')[0]}://.../{base}: {why}")
            shutil.rmtree(tmp, ignore_errors=True)
            continue
        tmp.rename(folder)
        run_prefix = base.rsplit("/", 2)[0] if base.count("/") >= 2 else ""
        metrics_key = f"{run_prefix}/metrics.jsonl" if run_prefix else "metrics.jsonl"
        if metrics_key in keys:
            get(metrics_key, dest / "metrics.jsonl")
        return dest
    raise UsageError(f"--resume-from {uri}: every checkpoint there is incomplete", hint=HINT_LOCAL)


def _client_error(scheme: str, uri: str, e: Exception) -> LauncherError:
    provider = "s3" if scheme == "s3" else "gcs"
    code = ""
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):
        code = str(resp.get("Error", {}).get("Code", ""))
        status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = code or str(status or "")
    status = getattr(e, "code", None)
    name = type(e).__name__
    refused = (code in ("AccessDenied", "403", "401", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                        "ExpiredToken") or status in (401, 403) or name in ("Forbidden", "Unauthorized",
                                                                            "NoCredentialsError",
                                                                            "DefaultCredentialsError"))
    first = first_line(e, 200)
    if refused:
        how = ("set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE with s3:GetObject and "
               "s3:ListBucket on the bucket" if scheme == "s3" else
               "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS "
               "to an account with storage.objects.get/list")
        return CredentialsError(provider, f"the credentials for {uri} were refused or missing ({first})",
                                hint=how)
    if code in ("NoSuchBucket", "404") or status == 404 or name == "NotFound":
        return UsageError(f"--resume-from {uri}: no such bucket or prefix ({first})")
    return ProviderError(provider, f"cannot read {uri}: {name}: {first}",
                         hint="check the URI and the network, then run the same command again")


class _S3:
    def __init__(self, bucket: str):
        try:
            import boto3
        except ImportError:  # pragma: no cover - depends on the image
            raise LauncherError("resuming from s3:// needs boto3", hint="pip install boto3") from None
        self.bucket = bucket
        self.client = boto3.client("s3")  # AWS_ENDPOINT_URL / AWS_REGION are honoured by boto3

    def list(self, prefix: str) -> Iterable[tuple[str, int]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{prefix}/" if prefix else "")
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"], int(obj["Size"])

    def get(self, key: str, target: Path) -> None:
        self.client.download_file(self.bucket, key, str(target))


class _GCS:
    def __init__(self, bucket: str):
        try:
            from google.cloud import storage
        except ImportError:  # pragma: no cover - depends on the image
            raise LauncherError("resuming from gs:// needs google-cloud-storage",
                                hint="pip install google-cloud-storage") from None
        self.client = storage.Client()  # STORAGE_EMULATOR_HOST is honoured by the client
        self.bucket = self.client.bucket(bucket)

    def list(self, prefix: str) -> Iterable[tuple[str, int]]:
        for blob in self.client.list_blobs(self.bucket, prefix=f"{prefix}/" if prefix else None):
            yield blob.name, int(blob.size or 0)

    def get(self, key: str, target: Path) -> None:
        self.bucket.blob(key).download_to_filename(str(target))
