"""local: train on this machine (CPU or local GPUs) with the same bundle and command as anywhere.

The run directory holds the bundle it ran (`bundle/`), `run.json` (plan summary, pid),
`train.log`, and what the training program writes. Ctrl-C makes the program checkpoint and
stop; running the same command again resumes from the latest checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from launcher.backends.base import Backend, CredentialCheck, Handle, JobStatus
from launcher.errors import ProviderError, UsageError

RUN_FILE = "run.json"


def read_run(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie or a reused pid of another program does not count
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"launcher" in cmd or b"train.py" in cmd
    except OSError:
        return True


class LocalBackend(Backend):
    name = "local"
    extra = "train"
    cannot = {
        "multi_node": "the local provider runs on this one machine; use sagemaker, azureml, vertex "
                      "or skypilot (kubernetes, aws, gcp, lambda) for several nodes",
    }

    def check_credentials(self) -> CredentialCheck:
        return CredentialCheck(True, "no credentials needed")

    def render(self, plan, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        script = out / "run.sh"
        script.write_text(
            "#!/bin/sh\n# The command `launch --provider local` runs, from the bundle folder.\n"
            "set -e\ncd \"$(dirname \"$0\")/bundle\"\n"
            f"exec {plan.train_command('${RUN_DIR:-../run}')}\n")
        script.chmod(0o755)
        return [script]

    # -- run here -------------------------------------------------------------------------
    def submit(self, plan, out: Path, processes: int | None = None, progress=None) -> Handle:
        """Run to completion in a subprocess; `progress(run_dir, proc)` draws while it runs."""
        run_dir = plan.run_dir.resolve()
        bundle = plan.bundle.path.resolve()
        cmd = [sys.executable, "-m", "launcher.train.launch", "--output-dir", str(run_dir)]
        if plan.resume_from:
            cmd += ["--resume-from", plan.resume_from]
        if processes:
            cmd += ["--processes", str(processes)]
        run_dir.mkdir(parents=True, exist_ok=True)
        log = (run_dir / "train.log").open("a")
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        log.flush()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(bundle)  # the bundle's own copy of the training program
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.setdefault("TRANSFORMERS_VERBOSITY", "error")
        env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        proc = subprocess.Popen(cmd, cwd=bundle, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=False)
        info = read_run(run_dir)
        info.update(pid=proc.pid, started_at=time.time(), status="running")
        (run_dir / RUN_FILE).write_text(json.dumps(info, indent=1))
        handle = Handle("local", str(proc.pid), plan.job.name, str(run_dir), extra={"pid": proc.pid})
        interrupted = False
        try:
            if progress is not None:
                progress(run_dir, proc)
            rc = proc.wait()
        except KeyboardInterrupt:
            interrupted = True
            # The program got SIGINT too (same process group): let it write its checkpoint.
            try:
                rc = proc.wait(timeout=600)
            except (KeyboardInterrupt, subprocess.TimeoutExpired):
                proc.kill()
                rc = proc.wait()
        finally:
            log.close()
        info = read_run(run_dir)
        info.update(pid=None, finished_at=time.time(), exit_code=rc,
                    status="succeeded" if rc == 0 else ("interrupted" if interrupted or rc == 143 else "failed"))
        (run_dir / RUN_FILE).write_text(json.dumps(info, indent=1))
        handle.extra["exit_code"] = rc
        handle.extra["interrupted"] = interrupted
        return handle

    def status(self, handle: Handle) -> JobStatus:
        run_dir = Path(handle.run_dir)
        info = read_run(run_dir)
        if _pid_alive(info.get("pid")):
            return JobStatus("running", f"pid {info['pid']}")
        state = {"succeeded": "succeeded", "failed": "failed", "interrupted": "cancelled"}.get(
            info.get("status", ""), "unknown")
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
            if state == "unknown":
                state = "succeeded"
            return JobStatus(state, f"{summary.get('status')} at step {summary.get('global_step')}", True)
        except (OSError, ValueError):
            return JobStatus(state, info.get("status", "no run here"), state != "unknown")

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        path = Path(handle.run_dir) / "train.log"
        if not path.exists():
            raise ProviderError("local", f"no train.log in {handle.run_dir}")
        with path.open(errors="replace") as f:
            while True:
                line = f.readline()
                if line:
                    yield line.rstrip("\n")
                    continue
                if not follow or not _pid_alive(read_run(Path(handle.run_dir)).get("pid")):
                    return
                time.sleep(0.5)

    def cancel(self, handle: Handle) -> None:
        pid = read_run(Path(handle.run_dir)).get("pid")
        if _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)  # the program checkpoints, then exits

    def fetch(self, handle: Handle, dest: Path) -> Path:
        src = Path(handle.run_dir).resolve()
        if dest.resolve() != src:
            shutil.copytree(src, dest, dirs_exist_ok=True)
        return dest


def move_aside(run_dir: Path) -> Path | None:
    """--fresh: keep the old run, renamed, instead of deleting anything."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return None
    dest = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir.rename(dest)
    return dest


def check_reuse(run_dir: Path, new_job_yaml: str) -> str:
    """'new' | 'resume' | 'complete'; raises when the folder holds another job's checkpoints."""
    old = run_dir / "bundle" / "job.yaml"
    has_ckpt = any((run_dir / "checkpoints").glob("step-*")) if (run_dir / "checkpoints").is_dir() else False
    if not old.exists():
        if has_ckpt:
            return "resume"
        return "new"
    if old.read_text() != new_job_yaml:
        if has_ckpt or (run_dir / "summary.json").exists():
            raise UsageError(f"{run_dir} holds a run of a different job",
                             hint="set another output.dir, or pass --fresh to start over "
                                  "(the old run is kept, renamed)")
        return "new"
    try:
        if json.loads((run_dir / "summary.json").read_text()).get("status") in ("completed", "early_stopped"):
            return "complete"
    except (OSError, ValueError):
        pass
    return "resume" if has_ckpt else "new"
