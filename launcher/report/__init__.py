"""Learning curves, final metrics and a diagnosis of a run directory.

Import-light: the CLI imports this after every local run and the bundle ships it; the heavy parts
(matplotlib) load only when a picture is drawn.
"""

from __future__ import annotations

from pathlib import Path


def after_run(run_dir, out) -> None:
    """After a local run: PNGs, the final metrics table, terminal curves, the confusion matrix
    and the diagnosis. Never fails the run: a problem here becomes a warning."""
    try:
        from launcher.report.view import show_report
        show_report(Path(run_dir), out)
    except Exception as e:  # noqa: BLE001 - the run succeeded; the report is a bonus
        out.warn(f"report: could not be shown ({type(e).__name__}: {e}); try `launch report {run_dir}`")
