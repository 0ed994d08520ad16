"""Load a job file: YAML with positions, `--set` overrides, validation, path resolution.

Every failure becomes one `JobError` line: file:line:column, the field path, what is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from launcher.errors import JobError
from launcher.job import Job, is_local_data

MAX_JOB_BYTES = 1_000_000

Pos = tuple[int, int]  # 1-based line, column


@dataclass
class LoadedJob:
    job: Job
    path: Path                      # the job file
    raw: dict                       # the YAML as written, overrides applied
    positions: dict[tuple, Pos] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)

    def where(self, dotted: str) -> str:
        """'file:line:col' of a field (or of its closest written parent)."""
        loc = tuple(dotted.split("."))
        while loc and loc not in self.positions:
            loc = loc[:-1]
        line, col = self.positions.get(loc, (1, 1))
        return f"{self.path}:{line}:{col}"

    def error(self, dotted: str, message: str, hint: str | None = None) -> JobError:
        loc = tuple(dotted.split("."))
        while loc and loc not in self.positions:
            loc = loc[:-1]
        line, col = self.positions.get(loc, (1, 1))
        return JobError(message, file=str(self.path), line=line, column=col, field=dotted, hint=hint)


class _Loader(yaml.SafeLoader):
    pass


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise JobError("no such job file", file=str(path)) from None
    except OSError as e:
        raise JobError(f"cannot read job file: {e.strerror}", file=str(path)) from None
    if path.is_dir():
        raise JobError("is a directory, not a job file", file=str(path))
    if size > MAX_JOB_BYTES:
        raise JobError(f"job file is {size:,} bytes; the limit is {MAX_JOB_BYTES:,}", file=str(path))
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise JobError(f"not valid UTF-8 (byte 0x{data[e.start]:02x})", file=str(path), line=line,
                       column=col, hint="save the file as UTF-8") from None


def _compose(text: str, path: Path) -> tuple[Any, dict[tuple, Pos]]:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        raise JobError(f"invalid YAML: {problem}", file=str(path),
                       line=mark.line + 1 if mark else None,
                       column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise JobError(f"invalid YAML: {str(e).splitlines()[0]}", file=str(path)) from None
    if node is None:
        raise JobError("the job file is empty", file=str(path), line=1, column=1,
                       hint="start from a file in job_templates/")
    positions: dict[tuple, Pos] = {}

    def walk(n: yaml.Node, loc: tuple) -> None:
        positions.setdefault(loc, (n.start_mark.line + 1, n.start_mark.column + 1))
        if isinstance(n, yaml.MappingNode):
            seen: dict[str, Pos] = {}
            for k, v in n.value:
                key = str(k.value)
                kpos = (k.start_mark.line + 1, k.start_mark.column + 1)
                if key in seen:
                    raise JobError(f"duplicate key '{key}' (first at line {seen[key][0]})",
                                   file=str(path), line=kpos[0], column=kpos[1],
                                   field=".".join(loc + (key,)))
                seen[key] = kpos
                positions[loc + (key,)] = kpos
                walk(v, loc + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, loc + (str(i),))

    walk(node, ())
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:  # pragma: no cover - compose already parsed it
        raise JobError(f"invalid YAML: {e}", file=str(path)) from None
    if not isinstance(raw, dict):
        raise JobError(f"the job file must be a mapping of fields, not a {type(raw).__name__}",
                       file=str(path), line=1, column=1)
    return raw, positions


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise JobError(f"'{item}' is not dotted.path=value", file="--set")
    key, value = item.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise JobError(f"'{key}' is not a dotted field path", file="--set")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return parts, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> set[str]:
    """Apply `dotted.path=value` items to the raw job; returns the dotted paths set."""
    paths: set[str] = set()
    for item in overrides:
        parts, value = parse_override(item)
        node = raw
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif not isinstance(nxt, dict):
                raise JobError(f"'{'.'.join(parts[:i + 1])}' is a value, not a section", file="--set",
                               field=".".join(parts))
            node = nxt
        node[parts[-1]] = value
        paths.add(".".join(parts))
    return paths


def _validation_error(e: ValidationError, path: Path, positions: dict, overridden: set) -> JobError:
    err = e.errors(include_url=False)[0]
    loc = tuple(str(x) for x in err["loc"])
    dotted = ".".join(loc) or "(job)"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "extra_forbidden":
        msg = f"unknown field '{loc[-1]}'"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] in ("model_type", "dict_type") and err.get("input") is None:
        msg = "section is empty; it needs fields (see `launch schema`)"
    elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    extra = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    if dotted in overridden:
        return JobError(msg + extra, file="--set", field=dotted)
    probe = loc
    while probe and probe not in positions:
        probe = probe[:-1]
    line, col = positions.get(probe, (1, 1))
    return JobError(msg + extra, file=str(path), line=line, column=col, field=dotted)


def load_job(path: str | os.PathLike, overrides: list[str] | None = None) -> LoadedJob:
    """Read, override, validate. Raises JobError with a one-line, located message."""
    p = Path(path)
    text = _read_text(p)
    if not text.strip():
        raise JobError("the job file is empty", file=str(p), line=1, column=1,
                       hint="start from a file in job_templates/")
    raw, positions = _compose(text, p)
    overrides = list(overrides or [])
    overridden = apply_overrides(raw, overrides)
    try:
        job = Job.model_validate(raw)
    except ValidationError as e:
        raise _validation_error(e, p, positions, overridden) from None
    return LoadedJob(job=job, path=p, raw=raw, positions=positions, overrides=overrides)


def resolve_data_path(loaded: LoadedJob, ref: str) -> Path:
    """A local data reference, resolved against the job file's folder."""
    p = Path(os.path.expanduser(ref))
    return p if p.is_absolute() else (loaded.path.parent / p).resolve()


def local_data_files(loaded: LoadedJob) -> dict[str, Path]:
    """{'train': path, 'validation': path} for the job's local data files."""
    out = {}
    d = loaded.job.data
    for key, ref in (("train", d.train), ("validation", d.validation)):
        if ref and is_local_data(ref):
            out[key] = resolve_data_path(loaded, ref)
    return out
