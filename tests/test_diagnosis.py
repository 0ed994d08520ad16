"""Diagnosis rules on synthetic curves: every rule, its threshold edges, noisy and very short runs."""

from __future__ import annotations

import ast
import json
import math
import random
from pathlib import Path


from launcher.report import diagnosis as dg
from launcher.report.diagnosis import THRESHOLDS, Thresholds, diagnose, diagnose_run
from launcher.report.rundata import load_run


def make_run(root: Path, train, evals=(), *, labels=("negative", "positive"), status="completed",
             steps_per_epoch=10, task="text-classification", lr=5e-5, cm=None, name="run") -> Path:
    """A run directory: train = [loss, ...] logged every 10 steps (or [(step, loss)]), evals =
    [(step, loss, accuracy)], epochs of `steps_per_epoch` steps."""
    d = root / name
    d.mkdir(parents=True)
    train = [(10 * (i + 1), y) if not isinstance(y, tuple) else y for i, y in enumerate(train)]
    last = max([s for s, _ in train] + [e[0] for e in evals] + [1])
    recs = [{"type": "start", "step": 0, "task": task, "epochs": max(1, math.ceil(last / steps_per_epoch)),
             "steps_per_epoch": steps_per_epoch, "total_steps": last, "monitor": "eval_loss"}]
    items = [(s, 0, {"type": "train", "step": s, "loss": y, "learning_rate": lr}) for s, y in train]
    best, best_step = math.inf, None
    for e in evals:
        s, loss = e[0], e[1]
        if loss < best:
            best, best_step = loss, s
        rec = {"type": "eval", "step": s, "eval_loss": loss, "best_step": best_step}
        if len(e) > 2 and e[2] is not None:
            rec["eval_accuracy" if task != "causal-lm" else "eval_perplexity"] = e[2]
        items.append((s, 1, rec))
    items += [(s, 0.5, {"type": "epoch_end", "step": s}) for s in range(steps_per_epoch, last + 1, steps_per_epoch)]
    recs += [r for _, _, r in sorted(items, key=lambda x: (x[0], x[1]))]
    if status != "running":
        recs.append({"type": "end", "step": last, "status": status, "model_step": best_step or last})
        em = {"eval_loss": best if evals else None, "step": best_step}
        if labels and task != "causal-lm":
            em["labels"] = list(labels)
            em["confusion_matrix"] = cm or [[10] * len(labels) for _ in labels]
        (d / "eval_metrics.json").write_text(json.dumps(em))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def diag(tmp_path, *a, **k) -> dict:
    return diagnose(load_run(make_run(tmp_path, *a, **k)))


def falling(n, start=0.69, end=0.2, noise=0.0, seed=0):
    rnd = random.Random(seed)
    return [start + (end - start) * (1 - math.exp(-4 * i / max(n - 1, 1))) / (1 - math.exp(-4))
            + rnd.uniform(-noise, noise) for i in range(n)]


# ---- healthy ----

def test_healthy_falling_curves(tmp_path):
    d = diag(tmp_path, falling(12), [(40, 0.45, 0.80), (80, 0.36, 0.85), (120, 0.33, 0.87)])
    assert d["pattern"] == "healthy" and d["rule"] == "none"
    assert any("0.450 → 0.330" in e for e in d["evidence"])
    assert d["confidence"] == "high"


def test_healthy_noisy_training_loss(tmp_path):
    d = diag(tmp_path, falling(30, noise=0.04, seed=3), [(100, 0.40, 0.82), (200, 0.35, 0.85), (300, 0.34, 0.86)])
    assert d["pattern"] == "healthy", d


def test_very_short_run_two_evaluations(tmp_path):
    """eval_every: epoch with 2 epochs: judged on the training windows, low confidence."""
    d = diag(tmp_path, falling(13, end=0.35), [(63, 0.43, 0.81), (126, 0.39, 0.83)], steps_per_epoch=63)
    assert d["pattern"] == "healthy"
    assert d["confidence"] == "low" and any("short run" in e for e in d["evidence"])


def test_single_evaluation_and_one_training_record(tmp_path):
    d = diag(tmp_path, [0.41], [(10, 0.38, 0.84)])
    assert d["pattern"] == "healthy" and d["confidence"] == "low"


def test_no_measurements_yet(tmp_path):
    d = diag(tmp_path, [], [], status="running")
    assert d["pattern"] == "healthy" and d["in_progress"] and d["confidence"] == "low"
    assert "no training or validation measurements" in d["evidence"][0]


def test_still_improving_advice(tmp_path):
    d = diag(tmp_path, falling(10), [(30, 0.50, 0.75), (60, 0.42, 0.80), (100, 0.35, 0.85)])
    assert d["pattern"] == "healthy" and "more epochs" in d["advice"][0]


# ---- overfitting ----

def test_overfitting_validation_rise(tmp_path):
    train = [(2 * i, y) for i, y in enumerate(falling(25, end=0.01), start=1)]
    evals = [(2 * i, v, 0.7) for i, v in enumerate([0.6, 0.5, 0.45, 0.44, 0.46, 0.5, 0.55, 0.6, 0.66, 0.7], start=1)]
    d = diag(tmp_path, train, evals, steps_per_epoch=2)
    assert d["pattern"] == "overfitting" and d["rule"] == "validation_rise"
    assert "rose over the last 6 evaluations, 0.440 → 0.700" in d["evidence"][0]
    assert "training loss kept falling" in d["evidence"][0]
    assert any("early_stopping_patience" in a for a in d["advice"])
    assert any("best at step 8" in a or "step 8" in a for a in d["advice"])


def test_overfitting_rise_threshold_edges(tmp_path):
    train = falling(20, end=0.05)
    base = [(40, 0.40, 0.8), (80, 0.30, 0.85), (120, 0.31, 0.85)]
    below = diag(tmp_path, train, base + [(160, 0.30 * (1 + THRESHOLDS.overfit_rise) - 0.005, 0.85)], name="a")
    above = diag(tmp_path, train, base + [(160, 0.30 * (1 + THRESHOLDS.overfit_rise) + 0.005, 0.85)], name="b")
    assert below["pattern"] == "healthy" and above["pattern"] == "overfitting"


def test_one_evaluation_after_the_best_needs_a_bigger_rise(tmp_path):
    """Two or three evaluations (eval_every: epoch, a few epochs): one rising point is weak evidence."""
    train = falling(30, end=0.1)
    base = [(100, 0.40, 0.8), (200, 0.30, 0.85)]
    small = diag(tmp_path, train, base + [(300, 0.30 * (1 + THRESHOLDS.overfit_rise_single) - 0.01, 0.85)], name="a")
    big = diag(tmp_path, train, base + [(300, 0.30 * (1 + THRESHOLDS.overfit_rise_single) + 0.01, 0.85)], name="b")
    assert small["pattern"] == "healthy" and big["pattern"] == "overfitting"
    assert "rose over the last 1 evaluation," in big["evidence"][0]


def test_overfitting_needs_training_loss_to_keep_falling(tmp_path):
    """Validation loss rises but training loss rises too: not overfitting (a learning-rate problem)."""
    train = falling(10, end=0.3) + [0.32, 0.35, 0.36, 0.38, 0.40, 0.42, 0.43, 0.45, 0.47, 0.48]
    d = diag(tmp_path, train, [(50, 0.40, 0.8), (100, 0.35, 0.85), (150, 0.45, 0.8), (200, 0.55, 0.78)])
    assert d["pattern"] != "overfitting"


def test_overfitting_small_absolute_rise_ignored(tmp_path):
    """A 20 % rise of a loss of 0.05 (0.01) is noise, not a trend: `overfit_min_abs`."""
    d = diag(tmp_path, falling(20, end=0.01), [(50, 0.06, 0.98), (100, 0.05, 0.99), (150, 0.06, 0.99), (200, 0.06, 0.99)])
    assert d["pattern"] == "healthy"


def test_overfitting_stalled_validation(tmp_path):
    train = falling(30, start=0.7, end=0.02)
    evals = [(50, 0.40, 0.8), (100, 0.35, 0.84), (150, 0.36, 0.84), (200, 0.355, 0.84), (250, 0.36, 0.84), (300, 0.36, 0.84)]
    d = diag(tmp_path, train, evals)
    assert d["pattern"] == "overfitting" and d["rule"] == "validation_stall"
    assert "not improved for 4 evaluations" in d["evidence"][0]


def test_overfitting_beats_chance_accuracy(tmp_path):
    """A tiny training set memorised: chance-level accuracy, but the training loss says overfitting."""
    train = [(2 * i, y) for i, y in enumerate(falling(20, end=0.005), start=1)]
    evals = [(2 * i, v, 0.52) for i, v in enumerate([0.69, 0.68, 0.70, 0.75, 0.85, 0.95], start=1)]
    assert diag(tmp_path, train, evals, steps_per_epoch=2)["pattern"] == "overfitting"


def test_overfitting_memorising_without_generalising(tmp_path):
    """A tiny training set: training loss collapses, validation loss never leaves ln 2."""
    train = [(i, y) for i, y in enumerate(falling(14, start=0.68, end=0.17), start=1)]
    evals = [(i, 0.690 - 0.0005 * i if i < 12 else 0.686 + 0.001 * (i - 12), 0.6) for i in range(1, 15)]
    d = diag(tmp_path, train, evals, steps_per_epoch=1)
    assert d["pattern"] == "overfitting" and d["rule"] == "memorising"
    assert "memorises the training set" in d["evidence"][0]


def test_learning_then_flat_validation_is_not_memorising(tmp_path):
    """Validation loss well below ln 2 from the first evaluation on: it generalised, then levelled."""
    train = falling(30, start=0.69, end=0.2)
    evals = [(100, 0.33, 0.86), (200, 0.31, 0.87), (300, 0.305, 0.87)]
    assert diag(tmp_path, train, evals)["pattern"] == "healthy"


# ---- underfitting ----

def test_underfitting_flat_training_loss(tmp_path):
    d = diag(tmp_path, [0.694, 0.693, 0.695, 0.693, 0.694], [(19, 0.6935, 0.49), (38, 0.6934, 0.49)],
             steps_per_epoch=19, lr=1e-9)
    assert d["pattern"] == "underfitting" and d["rule"] == "train_flat"
    assert "barely moved" in d["evidence"][0] and "ln(2) = 0.693" in d["evidence"][1]
    assert any("higher learning rate (peak now 1e-09)" in a for a in d["advice"])


def test_flat_but_already_low_loss_is_not_underfitting(tmp_path):
    """A model that already fits (loss far below chance) and stays there: flat but not underfit."""
    d = diag(tmp_path, [0.10, 0.098, 0.097, 0.099, 0.096], [(20, 0.12, 0.96), (40, 0.118, 0.96), (50, 0.117, 0.96)])
    assert d["pattern"] == "healthy"


def test_underfitting_chance_accuracy(tmp_path):
    d = diag(tmp_path, falling(10, end=0.5), [(50, 0.69, 0.51), (100, 0.69, 0.53)])
    assert d["pattern"] == "underfitting" and d["rule"] == "chance_accuracy"
    assert "chance level (0.500: 1/2)" in d["evidence"][0]


def test_chance_is_the_majority_class(tmp_path):
    """Validation 80/20: 0.8 accuracy is what always guessing the majority gets."""
    d = diag(tmp_path, falling(10, end=0.45), [(50, 0.52, 0.80), (100, 0.50, 0.81)], cm=[[80, 0], [20, 0]])
    assert d["pattern"] == "underfitting" and "the majority class" in d["evidence"][0]


def test_underfitting_accuracy_threshold_edge(tmp_path):
    gain = THRESHOLDS.underfit_acc_gain
    below = diag(tmp_path, falling(10, end=0.5), [(100, 0.6, 0.5 + 0.5 * gain - 0.01)], name="a")
    above = diag(tmp_path, falling(10, end=0.5), [(100, 0.6, 0.5 + 0.5 * gain + 0.01)], name="b")
    assert below["pattern"] == "underfitting" and above["pattern"] == "healthy"


def test_underfitting_causal_lm(tmp_path):
    d = diag(tmp_path, [5.1, 5.08, 5.07, 5.09, 5.06], [(20, 5.0, 150.0), (50, 4.98, 146.0)], task="causal-lm", labels=None)
    assert d["pattern"] == "underfitting"
    ok = diag(tmp_path, falling(10, start=5.0, end=3.0), [(50, 3.6, 36.6), (100, 3.2, 24.5)],
              task="causal-lm", labels=None, name="ok")
    assert ok["pattern"] == "healthy"


# ---- erratic ----

def test_erratic_non_finite(tmp_path):
    d = diag(tmp_path, [0.69, 0.5, float("nan"), 0.4], [(40, 0.5, 0.8)])
    assert d["pattern"] == "erratic" and "non-finite" in d["evidence"][0]
    assert any("lower learning rate" in a for a in d["advice"])


def test_erratic_diverging(tmp_path):
    d = diag(tmp_path, [0.69, 0.6, 0.7, 0.9, 1.2, 1.6, 2.3, 3.0], [(40, 1.0, 0.6), (80, 2.5, 0.5)])
    assert d["pattern"] == "erratic" and d["rule"] == "diverging"


def test_erratic_oscillating_validation(tmp_path):
    evals = [(20 * i, v, 0.8) for i, v in enumerate([0.50, 0.30, 0.55, 0.32, 0.58, 0.33, 0.6], start=1)]
    d = diag(tmp_path, falling(14, end=0.25), evals)
    assert d["pattern"] == "erratic" and d["rule"] == "oscillating"


def test_small_validation_wiggles_are_not_erratic(tmp_path):
    evals = [(20 * i, v, 0.8) for i, v in enumerate([0.40, 0.37, 0.38, 0.35, 0.36, 0.34, 0.35], start=1)]
    assert diag(tmp_path, falling(14, end=0.25), evals)["pattern"] == "healthy"


def test_erratic_training_spike(tmp_path):
    train = [0.69, 0.55, 0.40, 0.30, 0.62, 0.35, 0.28]
    d = diag(tmp_path, train, [(30, 0.4, 0.8), (70, 0.35, 0.85)])
    assert d["pattern"] == "erratic" and d["rule"] == "spike" and "step 50" in d["evidence"][0]


def test_early_wiggle_is_not_a_spike(tmp_path):
    """Before the loss has fallen `spike_min_progress`, a small rise is noise."""
    train = [0.69, 0.68, 0.70, 0.62, 0.5, 0.4, 0.35, 0.3]
    assert diag(tmp_path, train, [(40, 0.45, 0.8), (80, 0.38, 0.84)])["pattern"] == "healthy"


def test_short_epoch_tail_window_is_not_a_spike(tmp_path):
    """The record at an epoch end can average only 3 steps: noisier, skipped by the spike rule."""
    train = [(10, 0.69), (20, 0.60), (30, 0.5), (40, 0.45), (43, 0.62), (50, 0.40), (60, 0.38)]
    assert diag(tmp_path, train, [(43, 0.45, 0.8)])["pattern"] == "healthy"


# ---- the record, thresholds, run directory handling ----

def test_result_shape_and_thresholds_recorded(tmp_path):
    d = diag(tmp_path, falling(12), [(40, 0.45, 0.80), (80, 0.36, 0.85), (120, 0.33, 0.87)])
    assert set(d) >= {"pattern", "evidence", "advice", "summary", "best_step", "model_step", "thresholds", "confidence"}
    assert d["pattern"] in dg.PATTERNS and d["thresholds"]["overfit_rise"] == THRESHOLDS.overfit_rise
    assert d["best_step"] == 120 and d["summary"].startswith("healthy: ")
    json.dumps(d)  # stored in summary.json


def test_custom_thresholds(tmp_path):
    run = load_run(make_run(tmp_path, falling(20, end=0.05), [(50, 0.4, 0.8), (100, 0.30, 0.85), (150, 0.32, 0.85)]))
    assert diagnose(run)["pattern"] == "healthy"
    assert diagnose(run, Thresholds(overfit_rise_single=0.05, overfit_min_abs=0.01))["pattern"] == "overfitting"


def test_docstring_table_names_every_threshold():
    doc = dg.__doc__
    for name in Thresholds.__dataclass_fields__:
        if name != "window":
            assert f"`{name}`" in doc, name


def test_diagnose_run_uses_the_summary_given(tmp_path):
    d = make_run(tmp_path, falling(12), [(40, 0.45, 0.8), (80, 0.36, 0.85)], status="running")
    assert diagnose_run(d)["in_progress"]
    out = diagnose_run(d, {"status": "completed", "model_step": 80, "best_step": 80})
    assert not out["in_progress"] and out["model_step"] == 80


def test_torn_last_line_and_resumed_duplicates(tmp_path):
    d = make_run(tmp_path, falling(6), [(30, 0.5, 0.8)], status="running")
    with (d / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"type": "start", "step": 30, "task": "text-classification", "monitor": "eval_loss"}) + "\n")
        f.write(json.dumps({"type": "train", "step": 40, "loss": 0.33}) + "\n")
        f.write('{"type": "train", "step": 50, "lo')
    run = load_run(d)
    assert [r["step"] for r in run.train] == [10, 20, 30, 40, 50, 60] or run.train[-1]["step"] == 60
    assert dict(run.series("loss", "train"))[40] == 0.33
    assert diagnose(run)["pattern"] in dg.PATTERNS


def test_diagnosis_module_is_pure_stdlib():
    """It runs inside the training program on every provider: standard library and launcher.report only."""
    for mod in ("diagnosis.py", "rundata.py"):
        tree = ast.parse((Path(dg.__file__).parent / mod).read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert names <= {"__future__", "math", "statistics", "dataclasses", "pathlib", "typing", "json",
                         "launcher"}, names
