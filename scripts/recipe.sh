#!/usr/bin/env bash
# Set up from nothing (idempotent), then run the SciFact recipe: BM25, zero-shot MiniLM,
# mined negatives, fine-tuning, encoding, search, evaluation. Extra flags go to the recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
.venv/bin/densekit recipe scifact --output_dir runs/scifact "$@"
