"""The JAX backend: densekit's Flax encoder, batches split over the local devices."""

from __future__ import annotations

import logging

from densekit.encoders.batched import BatchedTextEncoder
from densekit.encoders.interface import EncoderSpec
from densekit.errors import ConfigError
from densekit.modeling.encoder import load_tokenizer

logger = logging.getLogger(__name__)


def check(spec: EncoderSpec) -> None:
    for bad, flag in (
        (spec.device is not None, "--device (JAX picks devices; set JAX_PLATFORMS=cpu|tpu|cuda)"),
        (spec.overrides.get("lora_name_or_path"), "--lora_name_or_path (merge it with merge-lora)"),
        (spec.quantize or spec.export_dir, "--quantize/--export_dir (onnx and openvino only)"),
    ):
        if bad:
            raise ConfigError(f"{flag} is not on the JAX path")


def load(spec: EncoderSpec) -> BatchedTextEncoder:
    """The Flax encoder; ``precision`` auto computes in bf16 on TPU and GPU, fp32 on CPU."""
    from densekit.jax import require_jax

    require_jax()
    import jax

    from densekit.jax.encoder import JaxEncoder
    from densekit.jax.run import compute_dtype

    dtype = compute_dtype(spec.precision)
    model = JaxEncoder.from_pretrained(spec.model, dtype=dtype, **spec.settings_overrides())
    logger.info("encoding on %d %s device(s)", jax.local_device_count(), jax.default_backend())
    tokenizer = load_tokenizer(spec.tokenizer or spec.model, model.settings.padding_side)
    return BatchedTextEncoder(model, tokenizer, "jax", bf16=dtype != jax.numpy.float32)
