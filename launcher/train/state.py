"""Run directory, atomic checkpoints and the metrics stream.

Run directory layout (the same on every provider):
    metrics.jsonl            one JSON object per line: start, train, eval, checkpoint, end
    checkpoints/step-000120/ accelerate save_state + trainer_state.json + COMPLETE marker
    model/                   the final model and tokenizer (save_pretrained) + README.md card
    predictions.csv, eval_metrics.json, summary.json, train.log
A checkpoint is written to a temporary folder and renamed into place only when complete, so a
kill at any moment leaves either a whole checkpoint or none; a folder without COMPLETE is skipped.
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


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first; broken partial ones are skipped with a warning."""
    root = run_dir / CKPT_DIR
    out = []
    if not root.is_dir():
        return out
    for p in root.iterdir():
        m = _CKPT_RE.match(p.name)
        if not m or not p.is_dir():
            continue
        ok = (p / COMPLETE).exists() and (p / STATE_FILE).exists()
        if ok:
            try:
                json.loads((p / STATE_FILE).read_text())
            except (OSError, ValueError):
                ok = False
        if ok:
            out.append((int(m.group(1)), p))
        else:
            warn(f"skipping incomplete checkpoint {p}")
    return sorted(out)


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    cks = list_checkpoints(run_dir)
    return cks[-1][1] if cks else None


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
        (tmp / COMPLETE).write_text(str(time.time()))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        _rotate(run_dir, keep, protect)
    accelerator.wait_for_everyone()
    return final


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
        self.path.write_text("".join(f"{x}\n" for x in keep))

    def write(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {"time": round(time.time(), 3), **rec}
        with self.path.open("a") as f:
            f.write(json.dumps(rec, default=float) + "\n")
            f.flush()


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    os.replace(tmp, path)
