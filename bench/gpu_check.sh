#!/usr/bin/env bash
# The densekit GPU check, one prepared script for one CUDA GPU (H100/H200), under 8 minutes:
#
#   bash bench/gpu_check.sh OUT
#
# 1. installs what the image lacks from gpu_wheels/ (bash bench/gpu_wheels.sh made it on a CPU
#    machine; pip --no-index, torch pinned, densekit with --no-deps): bench/gpu_install.py;
# 2. runs the GPU tests, pytest -m gpu tests/gpu (fp16/bf16 GradCache, overflow skip, CUDA
#    dropout replay, world size 1, ZeRO-2/3, SDPA/flash, QLoRA, the reranker's first-token path);
# 3. measures throughput against sentence-transformers: bench/gpu_bench.py;
# 4. writes OUT/summary.json and OUT/summary.md (bench/gpu_summary.py), beside gpu_check.log,
#    pytest.xml, details.jsonl, install.json and bench.json.
# Without CUDA it installs nothing, shows the GPU tests collected and skipped, writes a summary
# saying so and exits 0. Exit status 1 when a GPU test failed. docs/gpu.md says what holds.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${1:?usage: bash bench/gpu_check.sh OUT}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python
else PY=python3; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 DS_ACCELERATOR=cuda WANDB_DISABLED=true TQDM_DISABLE=1
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export DENSEKIT_GPU_DETAILS="$OUT/details.jsonl"
: >"$DENSEKIT_GPU_DETAILS"
rm -f "$OUT/pytest.xml" "$OUT/bench.json" "$OUT/install.json"
START=$(date +%s)
DEADLINE=$((START + ${GPU_CHECK_BUDGET_S:-450}))
left() {  # seconds for the next step: at most $1, never past the deadline
  local rest=$((DEADLINE - $(date +%s)))
  [ "$rest" -lt "$1" ] && echo $((rest > 10 ? rest : 10)) || echo "$1"
}
CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
DEVICE=""
if [ "$CUDA" = 1 ]; then
  DEVICE=$("$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}')")
fi
{
  echo "== densekit GPU check $(date -Is): python $PY, CUDA $CUDA ${DEVICE}"
  if [ "$CUDA" = 1 ]; then
    echo "== install (gpu_wheels/ -> pip --no-index)"
    timeout "$(left 90)" "$PY" bench/gpu_install.py --wheels "$ROOT/gpu_wheels" --out "$OUT/install.json"
    echo "@@ install rc=$?"
  else
    echo "no CUDA device: nothing installed, nothing measured; the GPU tests are collected and skipped"
  fi
  echo "== pytest -m gpu tests/gpu"
  PYTHONPATH="tests/gpu${PYTHONPATH:+:$PYTHONPATH}" timeout "$(left 280)" "$PY" -m pytest tests/gpu -m gpu \
    --confcutdir=tests/gpu -p gpu_plugin -p no:cacheprovider \
    -q -rA --junitxml "$OUT/pytest.xml"
  echo "@@ pytest rc=$?"
  if [ "$CUDA" = 1 ]; then
    echo "== throughput (bench/gpu_bench.py)"
    timeout "$(left 150)" "$PY" bench/gpu_bench.py --out "$OUT/bench.json"
    echo "@@ bench rc=$?"
  fi
} 2>&1 | tee "$OUT/gpu_check.log"
"$PY" bench/gpu_summary.py "$OUT" --seconds $(($(date +%s) - START)) --cuda "$CUDA" --device "$DEVICE"
