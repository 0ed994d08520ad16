"""The report of one run directory: PNGs written, then (for people) the final metrics table, the
curves in the terminal, the confusion matrix table and the diagnosis; or (--format json) one object.
Works on any run directory: finished, early-stopped, still in progress, or copied back from a provider.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from launcher.report import terminal
from launcher.report.diagnosis import diagnose
from launcher.report.rundata import RunData, load_run

SHOWN_METRICS = ("eval_loss", "eval_accuracy", "eval_f1_macro", "eval_precision_macro", "eval_recall_macro",
                 "eval_perplexity", "eval_token_accuracy", "eval_examples", "eval_tokens")


def write_pngs(run: RunData, dest: Path, diagnosis: Optional[dict], out) -> list[Path]:
    """learning_curves.png (and confusion_matrix.png for classification); a failure is a warning."""
    written = []
    try:
        from launcher.report import curves
        if run.train or run.evals:
            written.append(curves.learning_curves(run, dest, diagnosis))
        cm = run.eval_metrics.get("confusion_matrix")
        if cm and run.labels:
            written.append(curves.confusion_matrix(run.labels, cm, dest))
    except ImportError as e:
        out.warn(f"report: no PNGs: {e.name or e} is not installed (pip install matplotlib)")
    except Exception as e:  # noqa: BLE001 - plotting must never fail a run or a report
        out.warn(f"report: no PNGs ({type(e).__name__}: {e})")
    return written


def metric_rows(run: RunData) -> list[tuple[str, str]]:
    final = run.final_metrics()
    keys = [k for k in SHOWN_METRICS if k in final] + \
        [k for k in final if k.startswith("eval_") and k not in SHOWN_METRICS]
    return [(k, f"{final[k]:.4f}" if isinstance(final[k], float) else str(final[k])) for k in keys]


def model_line(run: RunData) -> str:
    step, best, total = run.model_step, run.best_step, run.summary.get("global_step")
    if run.in_progress:
        last = run.evals[-1]["step"] if run.evals else None
        return (f"in progress ({run.status}): last evaluation at step {last}" if last is not None
                else f"in progress ({run.status}): no evaluation yet") + \
            (f", best so far at step {best}" if best is not None else "")
    if step is None:
        return "saved model: step unknown"
    txt = f"saved model: step {step}" + (f" of {total}" if total is not None else "")
    if run.status == "early_stopped":
        txt += f"; early stopping ({run.monitor}) kept the best checkpoint"
    elif best is not None and best != step:
        txt += f"; the best evaluation ({run.monitor}) was at step {best}"
    elif best is not None:
        txt += f" (the best by {run.monitor})"
    return txt


def report_dict(run: RunData, diagnosis: dict, pngs: list[Path]) -> dict:
    return {"run_dir": str(run.run_dir), "status": run.status, "in_progress": run.in_progress,
            "task": run.task, "model_step": run.model_step, "best_step": run.best_step,
            "monitor": run.monitor, "final_metrics": run.final_metrics(),
            "confusion_matrix": ({"labels": run.labels, "matrix": run.eval_metrics["confusion_matrix"]}
                                 if run.eval_metrics.get("confusion_matrix") else None),
            "diagnosis": diagnosis, "pngs": [str(p) for p in pngs]}


def show_report(run_dir: Path, out, dest: Optional[Path] = None, plots: bool = True,
                run: Optional[RunData] = None) -> dict:
    run = run or load_run(run_dir)
    diag = diagnose(run)
    pngs = write_pngs(run, Path(dest or run_dir), diag, out) if plots else []
    rep = report_dict(run, diag, pngs)
    if out.json_mode:
        out.json(rep)
        return rep
    rows = metric_rows(run)
    if rows:
        title = "final metrics" if not run.in_progress else "latest evaluation"
        out.table(["metric", "value"], rows, title=f"{title} ({run.run_dir})")
    out.result(model_line(run))
    curves = terminal.learning_curves(run)
    if curves:
        out.result("")
        for line in curves:
            out.result(line)
    cm = run.eval_metrics.get("confusion_matrix")
    if cm and run.labels:
        cols, body = terminal.confusion_rows(run.labels, cm)
        out.table(cols, body, title="confusion matrix (validation)")
    out.result("")
    out.result(f"diagnosis: {diag['summary']}" + (" (provisional)" if diag["in_progress"] else ""))
    for e in diag["evidence"][1:]:
        out.result(f"  - {e}")
    if diag["advice"]:
        out.result("try:" if diag["pattern"] != "healthy" else "next:")
        for a in diag["advice"]:
            out.result(f"  - {a}")
    for p in pngs:
        out.result(f"wrote {p}")
    return rep
