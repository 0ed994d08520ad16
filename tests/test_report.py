"""`launch report` and after_run on run directories: finished, in progress, copied back, early-stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, launch
from test_diagnosis import falling, make_run

from launcher.output import Output
from launcher.report import after_run, terminal
from launcher.report.rundata import find_run_dir, load_run

PNG = b"\x89PNG\r\n\x1a\n"


def finished(tmp_path, name="run", **k):
    d = make_run(tmp_path, falling(12), [(40, 0.45, 0.80), (80, 0.36, 0.85), (120, 0.33, 0.87)],
                 cm=[[40, 8], [5, 47]], name=name, steps_per_epoch=40, **k)
    (d / "summary.json").write_text(json.dumps({"status": "completed", "task": "text-classification",
                                                "global_step": 120, "model_step": 120, "best_step": 120}))
    return d


def test_report_cli_on_a_finished_run(tmp_path):
    d = finished(tmp_path)
    r = launch("report", str(d))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "final metrics" in out and "eval_loss" in out
    assert "saved model: step 120 of 120" in out
    assert "validation loss" in out and ": epoch end" in out and "B best (step 120)" in out
    assert "confusion matrix" in out and "negative" in out and "0.833" in out  # recall 40/48
    assert "diagnosis: healthy:" in out
    for png in ("learning_curves.png", "confusion_matrix.png"):
        data = (d / png).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


def test_report_json(tmp_path):
    d = finished(tmp_path)
    r = launch("report", str(d), "--format", "json", "--no-plots")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["diagnosis"]["pattern"] == "healthy" and rep["model_step"] == 120 and not rep["in_progress"]
    assert rep["confusion_matrix"]["matrix"] == [[40, 8], [5, 47]] and rep["pngs"] == []
    assert not (d / "learning_curves.png").exists()


def test_report_on_a_run_in_progress(tmp_path):
    d = make_run(tmp_path, falling(6, end=0.45), [(30, 0.5, 0.78)], status="running", steps_per_epoch=30)
    with (d / "metrics.jsonl").open("a") as f:
        f.write('{"type": "train", "step": 70, "lo')  # the trainer is writing this line right now
    r = launch("report", str(d))
    assert r.returncode == 0, r.stderr
    assert "latest evaluation" in r.stdout and "in progress (running): last evaluation at step 30" in r.stdout
    assert "(provisional)" in r.stdout and "still in progress" in r.stdout
    assert (d / "learning_curves.png").read_bytes().startswith(PNG)


def test_report_before_any_evaluation(tmp_path):
    d = make_run(tmp_path, [0.69, 0.6], [], status="running")
    r = launch("report", str(d), "--no-plots")
    assert r.returncode == 0, r.stderr
    assert "no evaluation yet" in r.stdout and "diagnosis: healthy" in r.stdout


def test_report_on_a_run_copied_back_read_only(tmp_path):
    """A provider's output copied back: the run sits a level down, and the copy may be read-only."""
    d = finished(tmp_path / "fetched" / "output", name="tweets-sentiment")
    assert find_run_dir(tmp_path / "fetched") == d
    os.chmod(d, 0o555)
    try:
        pngs = tmp_path / "pngs"
        r = launch("report", str(tmp_path / "fetched"), "--out", str(pngs))
        assert r.returncode == 0, r.stderr
        assert f"using the run directory {d}" in r.stderr
        assert (pngs / "learning_curves.png").exists() and (pngs / "confusion_matrix.png").exists()
    finally:
        os.chmod(d, 0o755)


def test_report_early_stopped_says_which_step(tmp_path):
    evals = [(10, 0.5, 0.8), (20, 0.40, 0.85), (30, 0.45, 0.84), (40, 0.5, 0.83)]
    d = make_run(tmp_path, falling(4, end=0.1), evals, status="early_stopped", steps_per_epoch=10)
    (d / "summary.json").write_text(json.dumps({"status": "early_stopped", "global_step": 40, "model_step": 20,
                                                "best_step": 20, "task": "text-classification"}))
    r = launch("report", str(d), "--no-plots")
    assert r.returncode == 0, r.stderr
    assert "saved model: step 20 of 40; early stopping (eval_loss) kept the best checkpoint" in r.stdout


@pytest.mark.parametrize("args,msg", [(["/nonexistent/run"], "no such directory"), ([], "no metrics.jsonl")])
def test_report_bad_input_is_one_line(tmp_path, args, msg):
    r = launch("report", *(args or [str(tmp_path)]))
    assert r.returncode == 2 and msg in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_causal_lm_report_draws_perplexity(tmp_path, capsys):
    d = make_run(tmp_path, falling(10, start=5.0, end=3.0), [(50, 3.6, 36.6), (100, 3.2, 24.5)],
                 task="causal-lm", labels=None)
    after_run(d, Output())
    out = capsys.readouterr().out
    assert "validation perplexity" in out and "diagnosis: healthy" in out and "confusion" not in out
    assert (d / "learning_curves.png").exists() and not (d / "confusion_matrix.png").exists()


def test_after_run_never_fails_the_run(tmp_path, capsys, monkeypatch):
    from launcher.report import curves

    def boom(*a, **k):
        raise RuntimeError("no display")
    monkeypatch.setattr(curves, "learning_curves", boom)
    d = finished(tmp_path)
    after_run(d, Output())
    cap = capsys.readouterr()
    assert "warning: report: no PNGs (RuntimeError: no display)" in cap.err
    assert "diagnosis: healthy" in cap.out
    after_run(tmp_path / "missing", Output())  # not even a run directory: a warning at most
    assert "Traceback" not in capsys.readouterr().err


def test_terminal_chart_layout():
    lines = terminal.chart({"a": (".", [(0, 1.0), (10, 0.5)]), "b": ("o", [(5, 0.8)])}, title="loss",
                           width=20, height=5, vlines=[5], marks={"B": 10})
    assert lines[0] == "loss"
    body = lines[1:6]
    assert all(len(x) == len(body[0]) for x in body)
    assert body[0].split("|")[1][0] == "." and body[-1].split("|")[1][-1] == "."
    assert ":" in body[2] or "o" in body[2]
    assert lines[6].rstrip().endswith("B+")
    assert "B best (step 10)" in lines[-1] and ": epoch end" in lines[-1]
    assert terminal.chart({"a": (".", [])}, title="x") == ["x: nothing to draw yet"]


def test_terminal_curves_of_a_loaded_run(tmp_path):
    run = load_run(finished(tmp_path))
    text = "\n".join(terminal.learning_curves(run, width=40))
    assert "loss" in text and "validation accuracy" in text and "B" in text
    cols, rows = terminal.confusion_rows(["neg", "pos"], [[3, 1], [0, 4]])
    assert cols[0] == "true \\ predicted" and rows == [["neg", 3, 1, "0.750"], ["pos", 0, 4, "1.000"]]


def test_report_package_is_import_light():
    """The CLI imports launcher.report after every local run: no matplotlib, torch or numpy there."""
    code = ("import sys, launcher.report, launcher.cli.report, launcher.report.diagnosis; "
            "print(sorted(m for m in ('matplotlib', 'torch', 'numpy', 'rich') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
