"""Remembered submissions: the handle `submit` printed, so status/logs/cancel can find the job.

Stored in $LAUNCHER_HOME/jobs.json (default ~/.launcher). A reference is a job id, a job name,
a run directory, or 'last'.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from launcher.backends.base import Handle
from launcher.errors import UsageError


def home() -> Path:
    return Path(os.environ.get("LAUNCHER_HOME") or Path.home() / ".launcher")


def _path() -> Path:
    return home() / "jobs.json"


def _load() -> list[dict]:
    try:
        data = json.loads(_path().read_text())
        return data if isinstance(data, list) else []
    except (OSError, ValueError):
        return []


def remember(handle: Handle) -> None:
    items = [h for h in _load() if not (h.get("provider") == handle.provider and h.get("job_id") == handle.job_id)]
    items.append(handle.to_dict())
    p = _path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(items[-500:], indent=1))
    os.replace(tmp, p)


def all_handles() -> list[Handle]:
    return [Handle.from_dict(h) for h in _load()]


def find(ref: str | None) -> Handle:
    items = all_handles()
    if not items and ref and Path(ref).is_dir():
        return Handle("local", ref, Path(ref).name, str(Path(ref).resolve()))
    if not items:
        raise UsageError("no submitted jobs remembered yet", hint="submit one with: launch --provider P JOB")
    if ref in (None, "", "last"):
        return items[-1]
    for h in reversed(items):
        if ref in (h.job_id, h.name, f"{h.provider}:{h.job_id}") or \
                (Path(ref).exists() and Path(h.run_dir).resolve() == Path(ref).resolve()):
            return h
    if Path(ref).is_dir():
        return Handle("local", ref, Path(ref).name, str(Path(ref).resolve()))
    raise UsageError(f"no remembered job '{ref}'",
                     hint="see `launch status` for the list, or pass the id that submit printed")
