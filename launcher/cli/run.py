"""`launch [--provider P] JOB`: plan, print the privacy note, then dry-run, run here, or submit."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path


def add_arguments(p, _cmd: str) -> None:
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--provider", "-p", default="local", help="where to run (default: local)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a job field, e.g. --set training.epochs=1 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="plan and render only; contact no one")
    p.add_argument("--out", default=None, help="where --dry-run writes plan.json, bundle/ and the request")
    p.add_argument("--resume-from", default=None, help="continue from a run directory or s3:// gs:// URI")
    p.add_argument("--fresh", action="store_true", help="start over; the old run directory is kept, renamed")
    p.add_argument("--accept-privacy-risk", action="store_true",
                   help="run where the data's sensitivity says no; recorded in plan.json")
    p.add_argument("--processes", type=int, default=None, help="local: processes on this machine (default: one per GPU, or 1)")
    p.add_argument("--follow", action="store_true", help="remote: stream logs after submitting")
    p.add_argument("--quiet", "-q", action="store_true", help="only errors and results")
    p.add_argument("--format", choices=["human", "json"], default="human")


def run(args, out, _cmd: str) -> int:
    from launcher.jobfile import load_job

    loaded = load_job(args.job, args.overrides)
    provider = args.provider
    from launcher.backends import get_backend
    backend = get_backend(provider)
    if args.resume_from:  # checked (and for local, fetched) before anything runs: launcher.resume
        from launcher.resume import resolve
        if args.fresh:
            from launcher.errors import UsageError
            raise UsageError("--fresh and --resume-from contradict each other", hint="pass one of them")
        notes: list[str] = []
        args.resume_from = resolve(args.resume_from, provider, Path(loaded.job.run_dir()).resolve(),
                                   dry_run=args.dry_run, notes=notes)
        for n in notes:
            out.info(n)
        if not args.dry_run:
            out.info(f"Resuming from {args.resume_from}")

    if args.dry_run:
        dest = Path(args.out or f"plan-{loaded.job.name}-{provider}")
        plan = _plan(args, loaded, backend, out, dest / "bundle")
        written = backend.render(plan, dest)
        plan_path = plan.write(dest)
        if out.json_mode:
            out.json({"plan": str(plan_path), "bundle_sha256": plan.bundle.sha256,
                      "artifacts": [str(p) for p in written]})
        else:
            out.info(f"dry run for {provider}: nothing was started")
            out.result(f"plan      {plan_path}")
            out.result(f"bundle    {dest / 'bundle'}  sha256 {plan.bundle.sha256[:16]}…  "
                       f"({len(plan.bundle.files)} files, {plan.bundle.size_bytes / 1e6:.1f} MB)")
            for p in written:
                out.result(f"artifact  {p}")
        return 0

    if provider == "local":
        return _run_local(args, loaded, backend, out)
    return _submit(args, loaded, backend, out)


def _plan(args, loaded, backend, out, bundle_dir: Path):
    """make_plan with this command's flags, then the privacy note every launch and dry-run prints."""
    from launcher.plan import make_plan

    plan = make_plan(loaded, backend.provider, bundle_dir, accept_privacy_risk=args.accept_privacy_risk,
                     resume_from=args.resume_from, backend=backend)
    _privacy_note(plan, out)
    return plan


def _privacy_note(plan, out) -> None:
    d = plan.privacy
    out.info(d.note)
    for w in getattr(d, "warnings", []) or []:
        out.warn(w)
    for n in plan.notes:
        out.info(n)


def _run_local(args, loaded, backend, out) -> int:
    from launcher.backends.local import check_reuse, move_aside
    from launcher.progress import follow

    run_dir = Path(loaded.job.run_dir()).resolve()
    if args.fresh:
        old = move_aside(run_dir)
        if old:
            out.info(f"--fresh: the previous run was kept at {old}")
    staging = run_dir / ".bundle-new"
    plan = _plan(args, loaded, backend, out, staging)
    try:
        mode = check_reuse(run_dir, (staging / "job.yaml").read_text())
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if (run_dir / "bundle").exists():
        shutil.rmtree(run_dir / "bundle")
    staging.rename(run_dir / "bundle")
    plan.bundle = dataclasses.replace(plan.bundle, path=run_dir / "bundle")
    plan.run_dir = run_dir
    plan.write(run_dir)
    if mode == "complete":
        out.info(f"{run_dir} already holds this job, complete; pass --fresh to train again")
        _print_results(run_dir, out)
        return 0
    if mode == "resume":
        from launcher.train.state import latest_checkpoint
        ck = latest_checkpoint(run_dir)
        out.info(f"Resuming from {ck}" if ck else "Resuming: no complete checkpoint yet, starting over")
    from launcher.train.launch import count_gpus
    gpus = count_gpus()
    where = f"{gpus} local GPU(s)" if gpus else "CPU (no GPU here)"
    if loaded.job.compute.gpu != "none":
        out.info(f"local: compute.gpu {loaded.job.compute.gpu} is for remote providers; "
                 f"this run uses {where}")
    else:
        out.info(f"local: this run uses {where}")
    out.info(f"run directory {run_dir}  (log: {run_dir / 'train.log'})")
    handle = backend.submit(plan, run_dir, processes=args.processes,
                            progress=lambda rd, proc: follow(rd, proc, out))
    rc = handle.extra.get("exit_code", 1)
    if handle.extra.get("interrupted") or rc == 143:
        out.info("stopped; a checkpoint was saved. Run the same command again to resume.")
        return 130
    if rc != 0:
        _print_failure(run_dir, rc, out)
        return rc if rc in (2,) else 1
    _print_results(run_dir, out)
    return 0


def _print_failure(run_dir: Path, rc: int, out) -> None:
    log = run_dir / "train.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errs = [line for line in lines if line.startswith("error:")]
    last = errs[-1] if errs else next((line for line in reversed(lines)
                                       if line.strip() and not line.startswith(("=", " "))), "")
    out.info(f"training failed (exit {rc}); see {log}")
    if last:
        out.info(last if last.startswith("error:") else f"error: {last.strip()[:300]}")


def _print_results(run_dir: Path, out) -> None:
    try:
        from launcher.report import after_run
    except ImportError:
        after_run = None
    if after_run is not None:
        after_run(run_dir, out)
        return
    try:
        m = json.loads((run_dir / "eval_metrics.json").read_text())
    except (OSError, ValueError):
        return
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in m.items()
            if not isinstance(v, (list, dict))]
    out.table(["metric", "value"], rows, title=f"final metrics ({run_dir})")


def _submit(args, loaded, backend, out) -> int:
    from launcher import handles

    dest = Path(loaded.job.run_dir()).resolve()
    cred = backend.check_credentials()
    if not backend.can("submit"):
        return _export(args, loaded, backend, out, dest, backend.cannot['submit'])
    if not cred.ok and getattr(backend, "exports_without_credentials", False):
        return _export(args, loaded, backend, out, dest, f"{backend.provider}: {cred.detail}, so the job was "
                       f"exported, not pushed. To push it: {cred.hint}")
    if not cred.ok:
        from launcher.errors import CredentialsError
        raise CredentialsError(backend.provider, f"no credentials: {cred.detail}", hint=cred.hint)
    plan = _plan(args, loaded, backend, out, dest / "bundle")
    plan.write(dest)
    handle = backend.submit(plan, dest)
    handles.remember(handle)
    if out.json_mode:
        out.json(handle.to_dict())
    else:
        out.result(f"submitted {handle.provider}:{handle.job_id}  ({handle.name})")
        out.info(f"follow it: launch status {handle.job_id} | launch logs {handle.job_id} --follow | "
                 f"launch cancel {handle.job_id}")
    if args.follow:
        for line in backend.logs(handle, follow=True):
            out.result(line)
    return 0


def _export(args, loaded, backend, out, dest: Path, why: str) -> int:
    """Providers with no job API (or no credentials, where exporting is useful): write the
    artifact into the run directory and say how to run it."""
    plan = _plan(args, loaded, backend, out, dest / "bundle")
    written = backend.render(plan, dest)
    plan.write(dest)
    for p in written:
        out.result(f"exported  {p}")
    out.info(why)
    return 0
