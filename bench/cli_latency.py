"""CLI latency: `launch --help`, `launch compare`, and `launch --dry-run` for every provider.

    .venv/bin/python bench/cli_latency.py [--runs 5] [--sky-launch]

Median wall time of several runs of each command, as a user types it (a fresh process each time),
next to SkyPilot's own CLI measured in the same run as the peer:
  sky --help                      vs launch --help
  import sky + sky.Task.from_yaml_config (what rendering a SkyPilot task costs) vs our dry runs
  sky launch --dryrun             only with --sky-launch: it starts SkyPilot's API server (10-38 s,
                                  ~1.7 GB) and then needs its catalog from raw.githubusercontent.com,
                                  so offline it fails; the time to that failure is reported.
Targets: --help <= 0.3 s, compare <= 0.6 s, every dry run <= 1.5 s.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "job_templates/text-classification.yaml"
PROVIDERS = ("local", "colab", "kaggle", "vast", "runpod", "jarvislabs", "sagemaker", "azureml", "vertex")
MANAGED = {
    "sagemaker": ["providers.sagemaker.role_arn=arn:aws:iam::123456789012:role/SageMakerRole",
                  "providers.sagemaker.bucket=s3://example-bucket/launcher", "providers.sagemaker.region=us-east-1"],
    "azureml": ["providers.azureml.subscription_id=00000000-0000-0000-0000-000000000000",
                "providers.azureml.resource_group=rg", "providers.azureml.workspace=ws",
                "providers.azureml.compute=gpu-cluster"],
    "vertex": ["providers.vertex.project=example-project", "providers.vertex.region=us-central1",
               "providers.vertex.staging_bucket=gs://example-bucket/launcher"],
}
TARGETS = {"help": 0.3, "compare": 0.6, "dry_run": 1.5}
SKY_TASK = ("import copy, sky\n"
            "cfg = {'name': 'bench', 'resources': {'cloud': 'runpod', 'accelerators': 'T4:1'},\n"
            "       'workdir': '.', 'setup': 'pip install -r requirements.txt',\n"
            "       'run': 'python -m launcher.train.launch --output-dir /tmp/run'}\n"
            "sky.Task.from_yaml_config(copy.deepcopy(cfg))\n")


def launch_exe() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "launch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "launcher.cli.main"]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], env: dict, timeout: float = 120, cpu: list | None = None) -> tuple[float, int, str]:
    """Wall seconds (and, appended to `cpu`, the CPU seconds the command used: on a machine shared
    with other work the wall time includes waiting for a core, the CPU time does not)."""
    t, c = time.perf_counter(), _children_cpu()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        rc, err = p.returncode, (p.stderr.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        rc, err = 124, f"timed out after {timeout:.0f} s"
    if cpu is not None:
        cpu.append(_children_cpu() - c)
    return time.perf_counter() - t, rc, err


def median_of(n: int, cmd: list[str], env: dict, fresh_out: Path | None = None) -> dict:
    times, cpu, rc, err = [], [], 0, ""
    for i in range(n):
        c = list(cmd)
        if fresh_out is not None:
            out = fresh_out / str(i)
            c += ["--out", str(out)]
        dt, rc, err = timed(c, env, cpu=cpu)
        if rc != 0:
            return {"median_s": None, "error": err[:200], "rc": rc}
        times.append(dt)
        if fresh_out is not None:
            shutil.rmtree(fresh_out / str(i), ignore_errors=True)
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "cpu_s": round(statistics.median(cpu), 3), "runs": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sky-launch", action="store_true", help="also time `sky launch --dryrun` (starts its API server)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    env = dict(os.environ, HOME=str(tmp / "home"), LAUNCHER_HOME=str(tmp / "launcher"),
               SKY_RUNTIME_DIR=str(tmp / "sky"), HF_HOME=str(tmp / "hf"), NO_COLOR="1",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    exe = launch_exe()
    res: dict[str, dict] = {}
    res["help"] = median_of(a.runs, exe + ["--help"], env)
    res["compare"] = median_of(a.runs, exe + ["compare", TEMPLATE], env)
    n_dry = max(3, a.runs // 2 + 1)
    for p in PROVIDERS:
        sets = [x for s in MANAGED.get(p, []) for x in ("--set", s)]
        r = median_of(n_dry, exe + ["--provider", p, TEMPLATE, *sets, "--dry-run"], env, tmp / f"dry-{p}")
        if r["median_s"] is None and "not available" in r.get("error", ""):
            r["skipped"] = "backend not there yet"
        res[f"dry_run_{p}"] = r
    # The peer: SkyPilot's own CLI, same machine, same run.
    sky = ROOT / ".venv" / "bin" / "sky"
    peers: dict[str, dict] = {}
    if sky.exists():
        peers["sky_help"] = median_of(3, [str(sky), "--help"], env)
        peers["sky_task_render"] = median_of(3, [sys.executable, "-c", SKY_TASK], env)
        if a.sky_launch:
            yaml_path = tmp / "task.yaml"
            yaml_path.write_text("resources:\n  cloud: runpod\n  accelerators: T4:1\nrun: echo hi\n")
            dt, rc, err = timed([str(sky), "launch", "--dryrun", "-y", str(yaml_path)], env, timeout=120)
            peers["sky_launch_dryrun"] = {"seconds": round(dt, 1), "rc": rc, "error": err[:200]}
            subprocess.run([str(sky), "api", "stop"], env=env, capture_output=True, timeout=60)
        else:
            peers["sky_launch_dryrun"] = {"median_s": None, "note": "not measurable offline: it starts SkyPilot's "
                                          "API server (10-38 s) and downloads its catalog from GitHub; "
                                          "--sky-launch times it to the failure"}
    else:
        peers["note"] = "skypilot not installed: no peer"
    shutil.rmtree(tmp, ignore_errors=True)

    for k, v in {**res, **peers}.items():
        shown = f"{v['median_s']:.3f} s  (cpu {v['cpu_s']:.3f} s)" if v.get("median_s") is not None else \
            (f"{v['seconds']} s (rc {v['rc']})" if "seconds" in v else (v.get("skipped") or v.get("error") or v.get("note", "")))
        print(f"{k:22s} {shown}", flush=True)
    dry = {k: v["median_s"] for k, v in res.items() if k.startswith("dry_run_") and v.get("median_s") is not None}
    worst = max(dry.values()) if dry else None
    failed = sorted(k for k, v in res.items() if v.get("median_s") is None)
    out = {
        "bench": "cli_latency", "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "runs": a.runs,
        "help_s": res["help"]["median_s"], "compare_s": res["compare"]["median_s"],
        "dry_run_s": dry, "dry_run_max_s": worst, "failed": failed,
        "cpu_s": {k: v.get("cpu_s") for k, v in res.items()},
        "peer_sky_help_s": peers.get("sky_help", {}).get("median_s"),
        "peer_sky_task_render_s": peers.get("sky_task_render", {}).get("median_s"),
        "peer_sky_launch_dryrun": peers.get("sky_launch_dryrun"),
        "targets": TARGETS,
    }
    h, c = out["help_s"], out["compare_s"]
    out["help_ok"] = h is not None and h <= TARGETS["help"]
    out["compare_ok"] = c is not None and c <= TARGETS["compare"]
    out["dry_run_over_target"] = sorted(k for k, v in dry.items() if v > TARGETS["dry_run"])
    if out["peer_sky_help_s"] and h:
        out["help_speedup_vs_sky"] = round(out["peer_sky_help_s"] / h, 1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
