"""How close is the runtime estimate to a real local CPU run? Runs the demo job twice here
(200 and 600 training examples, 1 epoch, 200 eval examples), times each `launch --provider local`
and compares with `launcher.cost`:

- shipped: the estimate `launch compare` gives (shipped or saved calibration), against the
  measured wall time of the whole command and against the training loop's own time;
- calibrated: the CPU rate and fixed start-up fitted on the small run, predicting the big one
  (out of sample).

The machine's load average is printed: on a shared machine other processes slow the runs down,
and no estimate can know that; the ratio against CPU seconds / cores (what the run would take
with the cores to itself) is printed beside the wall-clock one. `--save` fits both runs and writes $LAUNCHER_HOME/calibration.json
(default ~/.launcher), which `launch compare` then uses for the local row.

    .venv/bin/python bench/estimate_accuracy.py [--sizes 200 600] [--save]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TEMPLATE = ROOT / "job_templates" / "text-classification.yaml"


def overrides(n: int, eval_n: int, out: Path) -> list[str]:
    return [f"data.max_train_samples={n}", f"data.max_eval_samples={eval_n}", "training.epochs=1",
            "compute.gpu=none", f"output.dir={out}"]


def estimate(n: int, eval_n: int, out: Path):
    from launcher import cost
    from launcher.jobfile import load_job
    w = cost.workload(load_job(str(TEMPLATE), overrides(n, eval_n, out)))
    total, how = cost.cpu_seconds(w)
    cal = cost.calibration()
    train = w.train_flops / (cal["cpu_gflops_per_core"] * 1e9 * (os.cpu_count() or 1))
    return w, total, train, how


def measure(n: int, eval_n: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "launcher.cli.main", "--provider", "local", str(TEMPLATE)]
    for o in overrides(n, eval_n, out):
        cmd += ["--set", o]
    load0 = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if p.returncode != 0:
        raise SystemExit(f"run of {n} failed: {p.stderr.strip().splitlines()[-1:]}")
    s = json.loads((out / "summary.json").read_text())
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "train_loop_s": s["train_runtime_s"], "load_before": round(load0, 2),
            "load_after": round(os.getloadavg()[0], 2), "padded_tokens": s.get("padded_tokens")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[200, 600])
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--save", action="store_true", help="write the fitted calibration to $LAUNCHER_HOME")
    a = ap.parse_args()
    from launcher import cost

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        for n in a.sizes:
            out = Path(tmp) / f"run-{n}"
            w, est_total, est_train, how = estimate(n, a.eval, out)
            m = measure(n, a.eval, out)
            r = {"train_examples": n, "eval_examples": a.eval, **m,
                 "estimated_s": round(est_total, 2), "estimated_train_s": round(est_train, 2),
                 "train_tflop": round(w.train_flops / 1e12, 4), "eval_tflop": round(w.eval_flops / 1e12, 4),
                 "ratio_total": round(est_total / m["wall_s"], 3),
                 # CPU seconds over cores: the wall time this run would take with the cores to itself
                 "ratio_cpu_time": round(est_total / (m["cpu_s"] / (os.cpu_count() or 1)), 3),
                 "ratio_train": round(est_train / m["train_loop_s"], 3)}
            runs.append(r)
            print(f"{n:>5} train: measured {m['wall_s']:.1f} s wall ({m['train_loop_s']:.1f} s in the loop), "
                  f"estimated {est_total:.1f} s ({est_train:.1f} s training): ratio {r['ratio_total']:.2f} "
                  f"total, {r['ratio_train']:.2f} loop, {r['ratio_cpu_time']:.2f} against CPU time "
                  f"({m['cpu_s']:.0f} CPU s); load average {m['load_before']} -> {m['load_after']}",
                  flush=True)
    print(f"basis: {how}")

    # The idle reference recorded in /work/shared/notes/offline-models-data.md (same model, 2 CPU
    # threads, idle machine): 2,000 examples, 111k padded tokens per epoch, 29.8-31.2 examples/s.
    from launcher.jobfile import load_job
    ms = cost.model_size(load_job(str(TEMPLATE), []).job, TEMPLATE.parent)
    ref_tokens, ref_s = 111_000, 2000 / 30.5
    ref_est = 6 * (ms.compute + ms.layers * (ref_tokens / 2000) * ms.hidden) * ref_tokens / (
        cost.calibration()["cpu_gflops_per_core"] * 1e9 * 2)
    ref_ratio = round(ref_est / ref_s, 3)
    print(f"idle reference (offline-models-data.md): {ref_s:.1f} s training measured, {ref_est:.1f} s "
          f"estimated: ratio {ref_ratio:.2f}")
    sp = cost.calibration()["eval_speedup"]
    small, big = runs
    # calibrated on the small run, predicting the big one
    rate = small["train_tflop"] * 1e12 / small["train_loop_s"]
    fixed = small["wall_s"] - small["train_loop_s"] - small["eval_tflop"] * 1e12 / (rate * sp)
    pred_big = fixed + big["train_tflop"] * 1e12 / rate + big["eval_tflop"] * 1e12 / (rate * sp)
    ratio_oos = round(pred_big / big["wall_s"], 3)
    print(f"calibrated on {small['train_examples']}: {rate / 1e9 / (os.cpu_count() or 1):.1f} GFLOP/s per core, "
          f"{fixed:.1f} s fixed; predicts {big['train_examples']}: {pred_big:.1f} s vs {big['wall_s']:.1f} s "
          f"measured (ratio {ratio_oos:.2f})")
    saved = None
    if a.save:
        fa = small["train_tflop"] + small["eval_tflop"] / sp
        fb = big["train_tflop"] + big["eval_tflop"] / sp
        r2 = (fb - fa) * 1e12 / max(big["wall_s"] - small["wall_s"], 1e-6)
        cal = {"cpu_gflops_per_core": round(r2 / 1e9 / (os.cpu_count() or 1), 2), "eval_speedup": sp,
               "overhead_s": round(max(0.0, small["wall_s"] - fa * 1e12 / r2), 2),
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "load_average": os.getloadavg()[0]}
        home = Path(os.environ.get("LAUNCHER_HOME", Path.home() / ".launcher"))
        home.mkdir(parents=True, exist_ok=True)
        (home / "calibration.json").write_text(json.dumps(cal, indent=2) + "\n")
        saved = str(home / "calibration.json")
        print(f"saved {saved}: {cal}")
    within = all(0.75 <= r["ratio_total"] <= 1.25 for r in runs)
    within_cpu = all(0.75 <= r["ratio_cpu_time"] <= 1.25 for r in runs)
    print(json.dumps({"bench": "estimate_accuracy", "runs": runs, "within_25pct": within, "within_25pct_cpu_time": within_cpu,
                      "ratio_calibrated_out_of_sample": ratio_oos,
                      "idle_reference_ratio": ref_ratio, "cpu_count": os.cpu_count(),
                      "saved": saved}))


if __name__ == "__main__":
    main()
