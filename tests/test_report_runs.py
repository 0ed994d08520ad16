"""Three real runs built to show each pattern, each diagnosed correctly (the demo tweets, MiniLM):
healthy (a demo subset), overfitting (a tiny training set for many epochs), underfitting (a
learning rate near zero). As small as still shows each pattern; one run each, shared by the tests."""

from __future__ import annotations

import json

import pytest
from conftest import TEMPLATE, launch

RUNS = {
    "healthy": ["data.max_train_samples=320", "data.max_eval_samples=96", "training.epochs=2"],
    "overfitting": ["data.max_train_samples=16", "data.max_eval_samples=96", "training.epochs=14",
                    "training.learning_rate=0.0002"],
    "underfitting": ["data.max_train_samples=96", "data.max_eval_samples=96", "training.epochs=2",
                     "training.learning_rate=0.000000001", "training.logging_every=2"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pattern-runs")
    done = {}

    def get(pattern):
        if pattern not in done:
            out = root / pattern
            sets = [x for s in RUNS[pattern] for x in ("--set", s)]
            r = launch("--provider", "local", str(TEMPLATE), "--set", f"output.dir={out}", *sets, timeout=1800)
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
            done[pattern] = (out, r, json.loads((out / "summary.json").read_text()))
        return done[pattern]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("pattern", list(RUNS))
def test_real_run_is_diagnosed(runs, pattern):
    out, r, summary = runs(pattern)
    d = summary["diagnosis"]
    assert d["pattern"] == pattern, json.dumps(d, indent=1)
    assert d["evidence"] and d["advice"] and any(ch.isdigit() for ch in d["evidence"][0])
    assert f"diagnosis: {pattern}:" in r.stdout  # printed by after_run at the end of the local run
    assert (out / "learning_curves.png").stat().st_size > 5000
    assert (out / "confusion_matrix.png").stat().st_size > 3000


@pytest.mark.slow
def test_real_run_report_matches_the_training_program(runs):
    """`launch report` re-diagnoses from the run directory alone and agrees with summary.json."""
    for pattern in RUNS:
        out, _, summary = runs(pattern)
        rep = launch("report", str(out), "--format", "json", "--no-plots")
        assert rep.returncode == 0, rep.stderr
        got = json.loads(rep.stdout)
        assert got["diagnosis"]["pattern"] == summary["diagnosis"]["pattern"] == pattern
        assert got["model_step"] == summary["model_step"] and got["final_metrics"]["eval_accuracy"] >= 0


@pytest.mark.slow
def test_real_run_human_report(runs):
    out, r, summary = runs("healthy")
    assert "final metrics" in r.stdout and "confusion matrix" in r.stdout and "validation loss" in r.stdout
    assert f"saved model: step {summary['model_step']}" in r.stdout
