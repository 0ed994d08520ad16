"""`launch report RUN_DIR`: learning curves (PNG and terminal), final metrics, the confusion
matrix and a diagnosis of any run directory: finished, in progress, or copied back from a provider."""

from __future__ import annotations

from pathlib import Path


def add_arguments(p, _cmd: str) -> None:
    p.add_argument("run_dir", help="a run directory (the folder with metrics.jsonl, or one above it)")
    p.add_argument("--out", default=None, help="where to write the PNGs (default: the run directory)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs (terminal report only)")
    p.add_argument("--format", choices=["human", "json"], default="human")


def run(args, out, _cmd: str) -> int:
    from launcher.errors import UsageError
    from launcher.report.rundata import METRICS, find_run_dir
    from launcher.report.view import show_report

    given = Path(args.run_dir)
    if not given.exists():
        raise UsageError(f"{given}: no such directory")
    run_dir = find_run_dir(given)
    if run_dir is None:
        raise UsageError(f"{given}: no {METRICS} here or below; is it a run directory?",
                         hint="for a remote job, `launch fetch JOB_ID` copies its run directory back")
    if run_dir != given:
        out.info(f"report: using the run directory {run_dir}")
    dest = Path(args.out) if args.out else run_dir
    show_report(run_dir, out, dest=dest, plots=not args.no_plots)
    return 0
