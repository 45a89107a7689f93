"""The GPU tests' pytest plugin (``pytest -m gpu``): they are collected everywhere and skipped
with the reason where CUDA is missing, so CI (no GPU) lists them as skipped;
``bash bench/gpu_check.sh OUT`` runs them on one.

A plugin, not a ``conftest.py``: the test folders import helpers with ``from conftest import``,
and a second ``conftest`` module would take that name from the root one. The root conftest
loads this plugin; on the GPU machine the check runs ``pytest --confcutdir tests/gpu -p
gpu_plugin`` (the root conftest imports packages the GPU image may lack), so it sets the offline
environment itself and shares no fixture with the root one.
"""

from __future__ import annotations

import os
import tempfile

import pytest

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
if "HF_DATASETS_CACHE" not in os.environ:
    os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="densekit-gpu-datasets-")


def _cuda_reason() -> str | None:
    """None when a CUDA device is usable, else why not."""
    import torch

    if not torch.cuda.is_available():
        return (
            "needs a CUDA GPU (torch.cuda.is_available() is False here); "
            "bash bench/gpu_check.sh OUT runs these on one"
        )
    return None


def pytest_collection_modifyitems(config, items):
    reason = _cuda_reason()
    if reason is None:
        return
    # A skipif at the item's front is evaluated first, so this reason wins over a test's own
    # (e.g. "needs bitsandbytes"): on a CPU machine the missing GPU is the reason that matters.
    skip = pytest.mark.skipif(True, reason=reason)
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip, append=False)


@pytest.fixture(scope="session")
def gpu_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("gpu")


@pytest.fixture(scope="session")
def tiny_bert_dir(gpu_tmp) -> str:
    """A random 2-layer BERT (width 64), dropout off: precision comparisons need equal masks."""
    from gpu_support import make_tiny_bert

    return make_tiny_bert(gpu_tmp / "bert-nodrop", dropout=0.0)


@pytest.fixture(scope="session")
def tiny_bert_dropout_dir(gpu_tmp) -> str:
    """The same BERT with dropout 0.1, for GradCache's replay of CUDA random state."""
    from gpu_support import make_tiny_bert

    return make_tiny_bert(gpu_tmp / "bert-drop", dropout=0.1)


@pytest.fixture(scope="session")
def tiny_decoder_dir(gpu_tmp):
    """``tiny_decoder_dir("llama" | "qwen2")``: a random 2-layer decoder folder."""
    from gpu_support import make_tiny_decoder

    made: dict[str, str] = {}

    def make(kind: str) -> str:
        if kind not in made:
            made[kind] = make_tiny_decoder(kind, gpu_tmp / kind)
        return made[kind]

    return make
