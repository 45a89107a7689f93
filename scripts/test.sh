#!/usr/bin/env bash
# Set up from nothing (idempotent), then lint, check formatting and run the test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
bash scripts/setup_browser.sh
# Test files are spread over one worker per core (pytest-xdist; a file's tests stay together so
# its module fixtures are built once); DENSEKIT_TEST_WORKERS=0 runs them in this process.
.venv/bin/pytest -q -n "${DENSEKIT_TEST_WORKERS:-auto}" --dist loadfile "$@"
