"""The torch backend: densekit's ``DenseEncoder`` on CPU or GPU, fp32 or bf16 autocast."""

from __future__ import annotations

import torch

from densekit import precision
from densekit.encoders.batched import BatchedTextEncoder
from densekit.encoders.interface import EncoderSpec
from densekit.errors import ConfigError
from densekit.modeling.encoder import DenseEncoder, load_tokenizer


def load_torch_model(spec: EncoderSpec) -> DenseEncoder:
    """The torch encoder with ``spec``'s overrides over the folder's settings (on CPU)."""
    return DenseEncoder.from_pretrained(spec.model, **spec.overrides)


def check(spec: EncoderSpec) -> None:
    if spec.quantize or spec.export_dir:
        raise ConfigError("--quantize and --export_dir need --backend onnx or openvino")


def load(spec: EncoderSpec) -> BatchedTextEncoder:
    """The torch encoder on ``spec.device`` (CUDA when present), bf16 where ``precision`` says."""
    model = load_torch_model(spec)
    device = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    tokenizer = load_tokenizer(spec.tokenizer or spec.model, model.settings.padding_side)
    bf16 = precision.resolve(spec.precision, device) == "bf16"
    return BatchedTextEncoder(model, tokenizer, "torch", bf16=bf16)
