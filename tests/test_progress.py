"""The local run's progress follower: it reports only this attempt's records, also when a resume
rewrites metrics.jsonl under it (the rewrite drops what came after the checkpoint, then the new
'start' is appended)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from launcher.progress import follow
from launcher.train.state import MetricsWriter


class Out:
    quiet = True

    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(msg)


class Proc:
    def __init__(self, done: threading.Event):
        self.done = done

    def poll(self):
        return 0 if self.done.is_set() else None


def rec(**kw) -> str:
    return json.dumps(kw) + "\n"


def test_a_resume_that_rewrites_the_file_shorter_is_still_followed(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    old = time.time() - 100
    start = dict(type="start", step=0, total_steps=6, epochs=1, train_examples=96, eval_examples=64,
                 device="cpu", processes=1)
    # The killed attempt: start, train records up to step 6 (checkpoint at 4), a partial last line.
    path.write_text(rec(time=old, **start) + "".join(
        rec(time=old, type="train", step=s, epoch=s / 6, loss=0.7) for s in range(1, 7))
        + rec(time=old, type="checkpoint", step=4, path="checkpoints/step-000004") + '{"time": 1, "ty')
    done = threading.Event()

    def resumed_program():  # what the training program does on resume, with its own writer
        time.sleep(0.3)
        metrics = MetricsWriter(tmp_path, True)
        metrics.truncate_after(4)
        metrics.write({**start, "step": 4, "resumed_from_step": 4})
        metrics.write({"type": "eval", "step": 6, "epoch": 1.0, "eval_loss": 0.6, "eval_accuracy": 0.7})
        time.sleep(0.3)
        done.set()

    t = threading.Thread(target=resumed_program)
    t.start()
    out = Out()
    follow(tmp_path, Proc(done), out)
    t.join()
    assert out.lines[0] == "Resuming from checkpoint at step 4"
    assert any(line.startswith("eval @ step 6") for line in out.lines)
    assert not any("stopped at" in line for line in out.lines)  # nothing of the old attempt
