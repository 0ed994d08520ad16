"""Run directory, atomic checkpoints and the metrics stream.

Run directory layout (the same on every provider):
    metrics.jsonl            one JSON object per line: start, train, eval, checkpoint, end
    checkpoints/step-000120/ accelerate save_state + trainer_state.json + COMPLETE marker
    model/                   the final model and tokenizer (save_pretrained) + README.md card
    predictions.csv, eval_metrics.json, summary.json, train.log
A checkpoint is written to a temporary folder and renamed into place only when complete, so a
kill at any moment leaves either a whole checkpoint or none; a folder without COMPLETE is skipped.
COMPLETE lists every file and its size, so a checkpoint copied or synced only in part (a bucket
sync cut short, a FUSE rename that is not atomic) is skipped as well, with a warning.

Portable: the folder can be copied anywhere (another provider, s3://, gs://) and resumed with
`--resume-from`. trainer_state.json holds the step, epoch, data position (micro_in_epoch, in
per-process micro-batches, with the process count it was saved with) and the best metric.
Resuming with another number of processes converts the data position (adapt_position); RNG
states are per process, so the continuation is correct but not bit-identical then.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

CKPT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"
COMPLETE = "COMPLETE"
_CKPT_RE = re.compile(r"^step-(\d+)$")
# Exit code after a checkpoint on SIGTERM/SIGINT: 128 + SIGTERM, what schedulers read as
# "terminated by the platform"; SkyPilot managed jobs and SageMaker spot restart and resume.
PREEMPTED_EXIT = 143


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def _checkpoint_ok(p: Path) -> tuple[bool, str]:
    """Whole and readable? COMPLETE lists every file with its size (written last, before the
    rename), so a folder copied or synced only in part (s3 sync cut short, a kill -9 during a
    copy) is caught too, not only a save that never reached the rename."""
    marker, state = p / COMPLETE, p / STATE_FILE
    if not marker.is_file():
        return False, "no COMPLETE marker (the save was cut short)"
    if not state.is_file():
        return False, f"no {STATE_FILE}"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return False, f"{STATE_FILE} is unreadable"
    try:
        manifest = json.loads(marker.read_text())
    except (OSError, ValueError):
        manifest = None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if isinstance(files, dict):  # older checkpoints hold a bare timestamp: presence is enough
        for rel, size in files.items():
            f = p / rel
            try:
                if f.stat().st_size != size:
                    return False, f"{rel} is {f.stat().st_size} bytes, expected {size}"
            except OSError:
                return False, f"{rel} is missing"
    return True, ""


def list_checkpoints(run_dir: Path, quiet: bool = False) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first; broken partial ones are skipped with a warning."""
    root = run_dir / CKPT_DIR
    out = []
    if not root.is_dir():
        return out
    for p in root.iterdir():
        m = _CKPT_RE.match(p.name)
        if not m or not p.is_dir():
            continue
        ok, why = _checkpoint_ok(p)
        if ok:
            out.append((int(m.group(1)), p))
        elif not quiet:
            warn(f"skipping incomplete checkpoint {p}: {why}")
    return sorted(out)


def latest_checkpoint(run_dir: Path, quiet: bool = False) -> Optional[Path]:
    cks = list_checkpoints(run_dir, quiet)
    return cks[-1][1] if cks else None


def find_checkpoint(src: Path) -> Optional[Path]:
    """What `--resume-from` may name: a checkpoint folder, a run directory, or a folder that
    holds a run directory a level or two down (outputs fetched back from a provider, e.g.
    SageMaker's output/ or a synced bucket prefix). The newest complete checkpoint wins."""
    if (src / STATE_FILE).exists() and _CKPT_RE.match(src.name):
        ok, why = _checkpoint_ok(src)
        if ok:
            return src
        warn(f"skipping incomplete checkpoint {src}: {why}")
        return latest_checkpoint(src.parent.parent) if src.parent.name == CKPT_DIR else None
    if (src / STATE_FILE).exists():  # a checkpoint folder under another name
        return src if _checkpoint_ok(src)[0] else None
    found = list_checkpoints(src)
    if found:
        return found[-1][1]
    best: list[tuple[int, Path]] = []
    for depth in ("*", "*/*"):
        for root in sorted(src.glob(f"{depth}/{CKPT_DIR}")):
            best += list_checkpoints(root.parent)
        if best:
            return max(best)[1]
    return None


def adapt_position(saved: dict, processes: int) -> dict:
    """Resuming with another number of processes: the data position is kept in batches of the
    whole epoch (micro_in_epoch counts per-process micro-batches), so convert it. RNG states are
    per process (random_states_<i>.pkl): processes beyond the saved ones start from the seed
    (accelerate logs "Could not load random states"), so the run continues correctly but is not
    bit-identical to an uninterrupted one."""
    before = int(saved.get("processes") or processes)
    if before != processes and saved.get("micro_in_epoch"):
        saved = dict(saved)
        saved["micro_in_epoch"] = (int(saved["micro_in_epoch"]) * before) // processes
    return saved


def read_state(ckpt: Path) -> dict:
    return json.loads((ckpt / STATE_FILE).read_text())


def save_checkpoint(accelerator, run_dir: Path, step: int, state: dict, keep: int,
                    protect: set[int]) -> Path:
    """accelerate save_state into a temp folder, then rename: all or nothing."""
    root = run_dir / CKPT_DIR
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
        files = {str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
        _write_synced(tmp / COMPLETE, json.dumps({"time": time.time(), "step": step, "files": files}))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        _rotate(run_dir, keep, protect)
    accelerator.wait_for_everyone()
    return final


def _write_synced(path: Path, text: str) -> None:
    with path.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _rotate(run_dir: Path, keep: int, protect: set[int]) -> None:
    """Keep the newest `keep` checkpoints and the protected ones (the best); drop the rest."""
    cks = list_checkpoints(run_dir)
    newest = {s for s, _ in cks[-keep:]}
    for s, p in cks:
        if s not in newest and s not in protect:
            shutil.rmtree(p, ignore_errors=True)
    for p in (run_dir / CKPT_DIR).glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)


class MetricsWriter:
    """Appends JSON lines to metrics.jsonl (main process only), flushed at once so a progress
    reader or `launch report` sees a run in progress."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines logged after the checkpoint we resume from."""
        if not self.enabled or not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("type") in ("end",):
                continue
            if rec.get("step", 0) <= step or rec.get("type") == "start":
                keep.append(line)
        # A new file put in place atomically: a kill here leaves the old history whole, and a
        # reader following the file sees a new inode and starts over (launcher/progress.py).
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(f"{x}\n" for x in keep))
        os.replace(tmp, self.path)

    def write(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {"time": round(time.time(), 3), **rec}
        with self.path.open("a") as f:
            f.write(json.dumps(rec, default=float) + "\n")
            f.flush()


def carry_metrics(src_run: Path, run_dir: Path) -> None:
    """Resuming a run that started elsewhere: start this run's metrics.jsonl with the source
    run's history (truncated to the checkpoint by the caller). Only called when this run
    directory had no checkpoint of its own, so what it held was a stale, unresumable attempt."""
    src, dst = src_run / "metrics.jsonl", run_dir / "metrics.jsonl"
    if src.is_file() and src.resolve() != dst.resolve():
        shutil.copyfile(src, dst)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    os.replace(tmp, path)
