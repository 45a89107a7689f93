"""One interface for every way densekit turns texts into vectors, and a registry of backends.

A backend (torch, onnx, openvino, jax, or one a user registers) is loaded by name from an
:class:`EncoderSpec` and returns a :class:`TextEncoder`: raw query/passage texts in, float32
vectors out, with the model's own formatting (prefixes, title separator), truncation, pooling
and normalisation applied. Searchers, the server and ``densekit encode`` only see this interface.
"""

from densekit.encoders.interface import Calibration, EncoderSpec, TextEncoder
from densekit.encoders.registry import (
    available_backends,
    backend_names,
    load_encoder,
    register_backend,
)

__all__ = [
    "Calibration",
    "EncoderSpec",
    "TextEncoder",
    "available_backends",
    "backend_names",
    "load_encoder",
    "register_backend",
]
