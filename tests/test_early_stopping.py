"""training.early_stopping_patience: stop when the monitored metric has not improved for N
evaluations, keep the best checkpoint, save the best model, and say which step it came from."""

from __future__ import annotations

import json

import pytest
from conftest import TEMPLATE, launch

from launcher.errors import UsageError
from launcher.jobfile import load_job
from launcher.report.rundata import load_run
from launcher.train.metrics import is_better


def test_monitor_names_are_checked_when_the_job_loads():
    assert load_job(TEMPLATE, ["training.monitor=accuracy"]).job.training.monitor == "eval_accuracy"
    with pytest.raises(UsageError, match="unknown metric 'acc'"):
        load_job(TEMPLATE, ["training.monitor=acc"])
    with pytest.raises(UsageError, match="not measured for text-classification"):
        load_job(TEMPLATE, ["training.monitor=eval_perplexity"])


def test_improvement_direction_per_metric():
    assert is_better("eval_loss", 0.3, 0.4) and not is_better("eval_loss", 0.4, 0.3)
    assert is_better("eval_accuracy", 0.9, 0.8) and not is_better("eval_f1_macro", 0.8, 0.8)
    assert is_better("eval_perplexity", 10.0, 12.0) and is_better("eval_loss", 1.0, None)


def _records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """16 tweets, many epochs at a high rate: validation loss turns up within a few epochs."""
    out = tmp_path_factory.mktemp("es") / "run"
    r = launch("--provider", "local", str(TEMPLATE), "--set", f"output.dir={out}",
               "--set", "data.max_train_samples=16", "--set", "data.max_eval_samples=48",
               "--set", "training.epochs=30", "--set", "training.learning_rate=0.0002",
               "--set", "training.early_stopping_patience=2", "--set", "training.keep_checkpoints=1",
               "--set", "training.warmup_ratio=0", timeout=1800)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out, r


@pytest.mark.slow
def test_stops_after_patience_evaluations_without_improvement(stopped):
    out, _ = stopped
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "early_stopped"
    evals = [r for r in _records(out) if r["type"] == "eval"]
    steps = [e["step"] for e in evals]
    best = min(evals, key=lambda e: (e["eval_loss"], e["step"]))
    assert summary["best_step"] == best["step"] and summary["global_step"] == steps[-1]
    assert summary["global_step"] < 30 * summary["steps_per_epoch"]  # it did stop early
    after = [e for e in evals if e["step"] > best["step"]]
    assert len(after) == 2 and all(e["eval_loss"] >= best["eval_loss"] for e in after)


@pytest.mark.slow
def test_the_saved_model_is_the_best_one(stopped):
    out, _ = stopped
    summary = json.loads((out / "summary.json").read_text())
    best = [r for r in _records(out) if r["type"] == "eval" and r["step"] == summary["best_step"]][0]
    final = json.loads((out / "eval_metrics.json").read_text())
    assert summary["model_step"] == summary["best_step"] == final["step"] < summary["global_step"]
    # the restored model, evaluated again, scores what it scored at its step
    assert final["eval_loss"] == pytest.approx(best["eval_loss"], abs=1e-4)
    assert final["eval_accuracy"] == pytest.approx(best["eval_accuracy"], abs=1e-9)
    assert (out / "checkpoints" / f"step-{summary['best_step']:06d}").is_dir()  # kept despite keep_checkpoints=1
    card = (out / "model" / "README.md").read_text()
    assert f"Model from step {summary['best_step']} of {summary['global_step']}" in card
    end = [r for r in _records(out) if r["type"] == "end"][-1]
    assert end["status"] == "early_stopped" and end["model_step"] == summary["best_step"]


@pytest.mark.slow
def test_the_report_says_which_step_the_model_came_from(stopped):
    out, r = stopped
    summary = json.loads((out / "summary.json").read_text())
    line = f"saved model: step {summary['best_step']} of {summary['global_step']}; early stopping (eval_loss)"
    assert line in r.stdout  # after_run at the end of the local run
    assert summary["diagnosis"]["model_step"] == summary["best_step"]
    assert any(f"step {summary['best_step']}" in e for e in summary["diagnosis"]["evidence"])
    rep = launch("report", str(out), "--no-plots")
    assert rep.returncode == 0 and line in rep.stdout
    run = load_run(out)
    assert run.status == "early_stopped" and not run.in_progress
