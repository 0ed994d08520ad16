"""`launch status|logs|cancel|fetch [REF]`: follow a job that submit printed and remembered.

REF is the id submit printed (or `provider:id`), a job name, a run directory, or `last` (the
default). `launch status` with no REF and `--all` lists every remembered job.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(p, cmd: str) -> None:
    p.add_argument("ref", nargs="?", default="last",
                   help="job id submit printed, job name, run directory, or 'last' (default)")
    p.add_argument("--format", choices=["human", "json"], default="human")
    p.add_argument("--quiet", "-q", action="store_true", help="only errors and results")
    if cmd == "status":
        p.add_argument("--all", action="store_true", help="list every remembered job")
    if cmd == "logs":
        p.add_argument("--follow", "-f", action="store_true", help="keep streaming until the job ends")
    if cmd == "fetch":
        p.add_argument("--dest", default=None, help="where to put the outputs (default: the job's run directory)")


def run(args, out, cmd: str) -> int:
    from launcher import handles
    from launcher.backends import get_backend

    if cmd == "status" and getattr(args, "all", False):
        return _list(handles.all_handles(), out)
    handle = handles.find(args.ref)
    backend = get_backend(handle.provider)
    if cmd == "status":
        st = backend.status(handle)
        if out.json_mode:
            out.json({"handle": handle.to_dict(), "state": st.state, "detail": st.detail, "finished": st.finished})
        else:
            out.result(f"{handle.provider}:{handle.job_id}  {handle.name}  {st.state}"
                       + (f"  ({st.detail})" if st.detail else ""))
        return 0
    if cmd == "logs":
        for line in backend.logs(handle, follow=args.follow):
            out.result(line)
        return 0
    if cmd == "cancel":
        backend.cancel(handle)
        if out.json_mode:
            out.json({"cancelled": f"{handle.provider}:{handle.job_id}"})
        else:
            out.result(f"cancel requested for {handle.provider}:{handle.job_id} ({handle.name})")
        return 0
    if cmd == "fetch":
        dest = Path(args.dest or handle.run_dir)
        got = backend.fetch(handle, dest)
        if out.json_mode:
            out.json({"fetched": str(got)})
        else:
            out.result(f"outputs of {handle.provider}:{handle.job_id} in {got}")
        return 0
    raise AssertionError(f"unknown command {cmd}")  # pragma: no cover


def _list(items, out) -> int:
    if out.json_mode:
        out.json([h.to_dict() for h in items])
        return 0
    if not items:
        out.info("no submitted jobs remembered yet")
        return 0
    import time
    rows = [(f"{h.provider}:{h.job_id}", h.name, time.strftime("%Y-%m-%d %H:%M", time.localtime(h.submitted_at)),
             h.run_dir) for h in items]
    out.table(["job", "name", "submitted", "run dir"], rows)
    return 0
