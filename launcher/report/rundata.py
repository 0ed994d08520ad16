"""Read a run directory into plain series. Standard library only: this module ships in the bundle
and runs inside the training program, and `launch report` uses it on any run directory, wherever the
run happened, finished or still in progress.

A run directory holds metrics.jsonl (one JSON object a line: start, train, eval, epoch_end,
checkpoint, end) and, once finished, summary.json and eval_metrics.json. A resumed run may have
several `start` lines and, after a crash, a torn last line: both are handled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

METRICS = "metrics.jsonl"
FINAL_STATUSES = ("completed", "early_stopped")


@dataclass
class RunData:
    run_dir: Path
    start: dict = field(default_factory=dict)
    train: list = field(default_factory=list)       # train records, one a step, by step
    evals: list = field(default_factory=list)       # eval records, one a step, by step
    epoch_ends: list = field(default_factory=list)  # steps at which an epoch ended
    end: Optional[dict] = None
    summary: dict = field(default_factory=dict)
    eval_metrics: dict = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.start.get("task") or self.summary.get("task") or "text-classification"

    @property
    def causal(self) -> bool:
        return self.task == "causal-lm"

    @property
    def monitor(self) -> str:
        return self.start.get("monitor") or self.summary.get("monitor") or "eval_loss"

    @property
    def in_progress(self) -> bool:
        """No final status yet (also a run stopped by a signal: resuming continues it)."""
        status = (self.end or {}).get("status") or self.summary.get("status")
        return status not in FINAL_STATUSES

    @property
    def status(self) -> str:
        return (self.end or {}).get("status") or self.summary.get("status") or "running"

    @property
    def labels(self) -> list:
        return list(self.eval_metrics.get("labels") or [])

    @property
    def num_labels(self) -> Optional[int]:
        if self.labels:
            return len(self.labels)
        cm = self.eval_metrics.get("confusion_matrix")
        return len(cm) if cm else None

    @property
    def best_step(self) -> Optional[int]:
        if self.summary.get("best_step") is not None:
            return self.summary["best_step"]
        for rec in reversed(self.evals):
            if rec.get("best_step") is not None:
                return rec["best_step"]
        return None

    @property
    def model_step(self) -> Optional[int]:
        if self.summary.get("model_step") is not None:
            return self.summary["model_step"]
        return (self.end or {}).get("model_step")

    def series(self, key: str, source: str = "eval") -> list[tuple[int, float]]:
        """(step, value) pairs of one metric with finite or non-finite values kept as floats."""
        recs = self.evals if source == "eval" else self.train
        out = []
        for r in recs:
            v = r.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((int(r.get("step", 0)), float(v)))
        return out

    def final_metrics(self) -> dict:
        """The saved model's metrics: eval_metrics.json, else summary, else the last evaluation."""
        if self.eval_metrics:
            return {k: v for k, v in self.eval_metrics.items() if not isinstance(v, (list, dict))}
        if self.summary.get("final_metrics"):
            return dict(self.summary["final_metrics"])
        if self.evals:
            return {k: v for k, v in self.evals[-1].items() if k.startswith("eval_") or k == "step"}
        return {}


def find_run_dir(path: Path) -> Optional[Path]:
    """The folder holding metrics.jsonl: `path` itself, or the newest one up to 3 levels below (a
    run copied back from a provider may sit inside an output/ or model/ folder)."""
    path = Path(path)
    if (path / METRICS).is_file():
        return path
    if not path.is_dir():
        return None
    found = []
    for depth in ("*", "*/*", "*/*/*"):
        found += [p for p in path.glob(f"{depth}/{METRICS}") if p.is_file()]
        if found:
            break
    if not found:
        return None
    return max(found, key=lambda p: p.stat().st_mtime).parent


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_records(path: Path) -> list[dict]:
    """Every parsable line; a torn last line (a run still writing, or killed) is skipped."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    data = RunData(run_dir=run_dir)
    train: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    ends = set()
    for rec in read_records(run_dir / METRICS):
        typ = rec.get("type")
        step = rec.get("step", 0)
        if not isinstance(step, int):
            continue
        if typ == "start":
            first = dict(data.start) if data.start else {}
            data.start = {**first, **rec}  # a resumed run: the latest start wins, keys kept
        elif typ == "train" and "loss" in rec:
            train[step] = rec  # after a resume the re-logged step replaces the old one
        elif typ == "eval":
            evals[step] = rec
        elif typ == "epoch_end":
            ends.add(step)
        elif typ == "end":
            data.end = rec
    data.train = [train[s] for s in sorted(train)]
    data.evals = [evals[s] for s in sorted(evals)]
    data.epoch_ends = sorted(ends)
    data.summary = _read_json(run_dir / "summary.json")
    data.eval_metrics = _read_json(run_dir / "eval_metrics.json")
    return data
