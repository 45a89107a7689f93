"""The ONNX Runtime backend: the transformer exported once (fp32, or dynamic int8)."""

from __future__ import annotations

from densekit.encoders.batched import BatchedTextEncoder
from densekit.encoders.exported import check_exported, load_exported
from densekit.encoders.interface import EncoderSpec


def check(spec: EncoderSpec) -> None:
    check_exported(spec, "onnx")


def load(spec: EncoderSpec) -> BatchedTextEncoder:
    return load_exported(spec, "onnx")
