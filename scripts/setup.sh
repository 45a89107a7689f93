#!/usr/bin/env bash
# Create .venv and install densekit with its test tools and the optional backends (onnx, openvino, jax). Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
V=.venv/bin/python
"$V" -m pip install -q --upgrade pip >/dev/null
# torch first and pinned: an unpinned torch pulls several GB of CUDA wheels.
"$V" -m pip install -q "torch==2.13.0"
"$V" -m pip install -q -c scripts/constraints.txt -e ".[test,onnx,openvino,jax,serve]"
# train's --help needs transformers' TrainingArguments (torch, peft: seconds); render it once
# into the user's cache so the first --help a user types is instant
"$V" -m densekit train --help >/dev/null
"$V" -m densekit jax-train --help >/dev/null
