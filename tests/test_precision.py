"""``auto`` precision: bf16 only where the device computes it natively."""

from __future__ import annotations

import logging

import pytest
import torch

from densekit import precision
from densekit.arguments import RetrievalTrainingArguments
from densekit.errors import ConfigError


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be a CPU with (``cpu(True)``) or without native bf16."""
    monkeypatch.delenv("DENSEKIT_PRECISION", raising=False)
    precision._warn_slow_bf16.cache_clear()

    def set_native(native: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")

    return set_native


def test_auto_picks_fp32_on_an_avx2_cpu_and_bf16_with_native_support(cpu):
    cpu(False)
    assert precision.resolve("auto") == "fp32"
    assert "AVX2" in precision.native_bf16()[1]
    cpu(True)
    assert precision.resolve("auto") == "bf16"


def test_explicit_bf16_without_native_support_warns_once(cpu, caplog):
    cpu(False)
    with caplog.at_level(logging.WARNING):
        assert precision.resolve("bf16") == "bf16"
        assert precision.resolve("bf16") == "bf16"
    warnings = [r for r in caplog.records if "slower than fp32" in r.getMessage()]
    assert len(warnings) == 1 and "AVX512_BF16" in warnings[0].getMessage()


def test_environment_overrides_auto_only(cpu, monkeypatch):
    cpu(True)
    monkeypatch.setenv("DENSEKIT_PRECISION", "fp32")
    assert precision.resolve("auto") == "fp32"
    assert precision.resolve("bf16") == "bf16"
    with pytest.raises(ConfigError, match="--precision 'fp8'"):
        precision.resolve("fp8")


def test_training_arguments_resolve_auto(cpu, tmp_path):
    cpu(False)
    args = RetrievalTrainingArguments(output_dir=str(tmp_path))
    assert (args.bf16, args.precision) == (False, "fp32")
    cpu(True)
    args = RetrievalTrainingArguments(output_dir=str(tmp_path))
    assert (args.bf16, args.precision) == (True, "bf16")
    args = RetrievalTrainingArguments(output_dir=str(tmp_path), precision="fp32")
    assert not args.bf16
