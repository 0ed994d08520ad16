"""Follow a run's metrics.jsonl while it trains: a rich progress bar on a terminal, plain lines
otherwise (logs, CI). Reads only the metrics stream, so it works for any run directory."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


class MetricsTail:
    def __init__(self, path: Path):
        self.path, self.pos, self.buf, self.ino = path, 0, "", None

    def read(self) -> list[dict]:
        try:
            with self.path.open() as f:
                st = os.fstat(f.fileno())
                if st.st_ino != self.ino or st.st_size < self.pos:  # replaced or cut on resume: read it again
                    self.pos, self.buf, self.ino = 0, "", st.st_ino
                f.seek(self.pos)
                data = f.read()
                self.pos = f.tell()
        except FileNotFoundError:
            return []
        self.buf += data
        *lines, self.buf = self.buf.split("\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def _fmt_eval(rec: dict) -> str:
    keys = [k for k in ("eval_loss", "eval_accuracy", "eval_f1_macro", "eval_perplexity") if k in rec]
    return f"eval @ step {rec['step']} (epoch {rec.get('epoch', 0):.2f}): " + ", ".join(
        f"{k[5:]} {rec[k]:.4f}" for k in keys)


def follow(run_dir: Path, proc, out) -> None:
    """Draw progress until `proc` exits."""
    tail = MetricsTail(run_dir / "metrics.jsonl")
    # Only this attempt's records: by their time, not by where the file ended when we started. A
    # resume rewrites the file (it drops what came after its checkpoint) before it appends, so
    # an old end-of-file offset can land in the middle of the new 'start' record.
    since = time.time()
    live = sys.stderr.isatty() and not out.quiet
    state = {"total": None, "step": 0, "epoch": 0.0, "loss": None, "eps": None, "epochs": None}
    t0 = time.time()
    if live:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=out.err, transient=False)
        prog.start()
        task = prog.add_task("training", total=None, info="starting")
    last_plain = 0.0
    try:
        while True:
            done = proc.poll() is not None
            for rec in tail.read():
                if rec.get("time", since) < since:
                    continue
                typ = rec.get("type")
                if typ == "start":
                    state.update(total=rec["total_steps"], epochs=rec["epochs"], step=rec.get("step", 0))
                    if rec.get("resumed_from_step"):
                        out.info(f"Resuming from checkpoint at step {rec['resumed_from_step']}")
                    out.info(f"training {rec['train_examples']} examples, evaluating {rec['eval_examples']}, "
                             f"{rec['total_steps']} steps on {rec['device']} x{rec['processes']}")
                elif typ == "train":
                    state.update(step=rec["step"], epoch=rec["epoch"], loss=rec["loss"], eps=rec.get("examples_per_s"))
                elif typ == "eval":
                    msg = _fmt_eval(rec)
                    (prog.console.print(msg) if live else out.info(msg))
                elif typ == "end" and rec.get("status") == "interrupted":
                    out.info(f"stopped at step {rec['step']} ({rec.get('signal')}); checkpoint saved")
            info = f"epoch {state['epoch']:.2f}/{state['epochs'] or '?'}"
            if state["loss"] is not None:
                info += f"  loss {state['loss']:.4f}"
            if state["eps"]:
                info += f"  {state['eps']:.1f} ex/s"
            if live:
                prog.update(task, total=state["total"], completed=state["step"], info=info)
            elif state["total"] and time.time() - last_plain > 30:
                last_plain = time.time()
                out.info(f"step {state['step']}/{state['total']}  {info}  ({time.time() - t0:.0f}s)")
            if done:
                break
            time.sleep(0.5)
    finally:
        if live:
            prog.stop()
