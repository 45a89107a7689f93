"""What the ONNX Runtime and OpenVINO backends share: export the torch model once, run it.

The export (cached beside the model, fingerprinted, checked against torch on a probe batch) is
:mod:`densekit.inference.backends`'s job; this turns it into a :class:`TextEncoder`.
"""

from __future__ import annotations

from densekit.encoders.batched import BatchedTextEncoder
from densekit.encoders.interface import EncoderSpec
from densekit.encoders.torch_backend import load_torch_model
from densekit.errors import ConfigError
from densekit.inference.backends import (
    ExportSpec,
    check_exportable_folder,
    load_backend,
    require_runtime,
)
from densekit.modeling.encoder import load_tokenizer


def check_exported(spec: EncoderSpec, fmt: str) -> None:
    """What the flags and the folder alone show an export cannot do (no weights loaded)."""
    if spec.device not in (None, "cpu") or spec.precision == "bf16":
        raise ConfigError(f"--backend {fmt} runs on CPU in fp32 (or --quantize int8)")
    require_runtime(ExportSpec(fmt, spec.quantize))
    check_exportable_folder(spec.model)


def load_exported(spec: EncoderSpec, fmt: str) -> BatchedTextEncoder:
    """``spec``'s model exported to ``fmt`` (fp32 or ``spec.quantize``), on CPU."""
    model = load_torch_model(spec)
    tokenizer = load_tokenizer(spec.tokenizer or spec.model, model.settings.padding_side)
    runner = load_backend(
        model,
        tokenizer,
        spec.model,
        fmt,
        spec.quantize,
        spec.export_dir,
        spec.calibration.formatted(model) if spec.calibration else None,
        spec.threads,
    )
    return BatchedTextEncoder(runner, tokenizer, runner.backend)
