#!/usr/bin/env bash
# bf16 fine-tune on one NVIDIA GPU: examples/s, peak memory and MFU, unattended, under 5 minutes.
#   bash bench/gpu.sh            (from the repository root; uses .venv/bin/python, else python3)
# Two measurements of the same ~1B (>= 60 GiB GPUs) or ~350M Llama-style model: eager, then
# torch.compile if time is left. Prints both and, last, one JSON object with the better one.
# Without an NVIDIA GPU (or with no bf16) it says so and exits 0.
set -u
cd "$(dirname "$0")/.." || exit 1
PY=.venv/bin/python; [ -x "$PY" ] || PY=$(command -v python3)
BUDGET=${GPU_BENCH_BUDGET_S:-290}
start=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - start) )); }
nogpu() { echo "gpu bench: $1; nothing to measure"; echo "{\"bench\": \"gpu\", \"skipped\": \"$1\"}"; exit 0; }

if [ -n "${GPU_BENCH_SMOKE:-}" ]; then  # the whole flow on CPU with a tiny model (tests/test_bench.py)
  set -- --smoke "$@"
else
  command -v nvidia-smi >/dev/null 2>&1 || nogpu "no nvidia-smi (no NVIDIA driver)"
  timeout 30 nvidia-smi -L 2>/dev/null | grep -q '^GPU ' || nogpu "nvidia-smi lists no GPU"
  timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1 | sed 's/^/gpu bench: /'
fi
export TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error PYTHONWARNINGS=ignore
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
T=$(mktemp -d -t gpubench.XXXXXX); trap 'rm -rf "$T"' EXIT

timeout $(( $(left) < 150 ? $(left) : 150 )) "$PY" bench/gpu_mfu.py --budget-s 90 "$@" >"$T/eager" 2>"$T/eager.err"
rc=$?
grep -v '^{' "$T/eager"
[ $rc -eq 0 ] || { tail -3 "$T/eager.err"; echo "{\"bench\": \"gpu\", \"error\": \"eager run failed (rc $rc)\"}"; exit 1; }
if grep -q '"skipped"' "$T/eager"; then tail -1 "$T/eager"; exit 0; fi
if [ "$(left)" -gt 100 ]; then
  timeout $(( $(left) - 5 )) "$PY" bench/gpu_mfu.py --compile --budget-s $(( $(left) - 20 )) "$@" >"$T/compiled" 2>"$T/compiled.err"
  crc=$?
  if [ $crc -eq 0 ]; then grep -v '^{' "$T/compiled"
  elif [ $crc -eq 124 ]; then echo "gpu bench: the compiled run did not finish in time (kept the eager figures)"
  else echo "gpu bench: the compiled run failed (rc $crc; kept the eager figures):"; tail -3 "$T/compiled.err"; rm -f "$T/compiled"
  fi
fi
"$PY" - "$T" <<'PYEOF'
import json, pathlib, sys
runs = {}
for name in ("eager", "compiled"):
    p = pathlib.Path(sys.argv[1]) / name
    lines = [l for l in p.read_text().splitlines() if l.startswith("{")] if p.exists() else []
    if lines:
        runs[name] = json.loads(lines[-1])
best = max(runs.values(), key=lambda r: r.get("mfu") or r.get("tokens_per_s") or 0)
best = {**best, "runs": {name: {k: r.get(k) for k in ("mfu", "examples_per_s", "tokens_per_s", "peak_memory_gib")}
                         for name, r in runs.items()}}
if best.get("mfu") is not None:
    best["target_mfu"] = 0.40
    best["target_met"] = best["mfu"] >= 0.40
print(json.dumps(best))
PYEOF
