"""The OpenVINO backend: the transformer exported once (fp32, or int8 calibrated by NNCF)."""

from __future__ import annotations

from densekit.encoders.batched import BatchedTextEncoder
from densekit.encoders.exported import check_exported, load_exported
from densekit.encoders.interface import EncoderSpec


def check(spec: EncoderSpec) -> None:
    check_exported(spec, "openvino")


def load(spec: EncoderSpec) -> BatchedTextEncoder:
    return load_exported(spec, "openvino")
