"""Encoder backends by name: one registry line each, imported only when used.

Each entry names the module whose ``load(spec) -> TextEncoder`` builds the encoder, and the
packages it needs with the extra that installs them, so a backend whose packages are missing is
still listed (with its install hint) and fails with one line when chosen.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from densekit.encoders.interface import EncoderSpec, TextEncoder
from densekit.errors import ConfigError


@dataclass(frozen=True)
class Backend:
    """Where a backend's ``load`` lives and what it needs installed."""

    module: str
    requires: tuple[str, ...] = ()
    extra: str | None = None

    def missing(self) -> list[str]:
        """The required top-level packages that cannot be imported here."""
        return [name for name in self.requires if importlib.util.find_spec(name) is None]

    def hint(self) -> str:
        return f"pip install 'densekit[{self.extra}]'" if self.extra else "see its documentation"


_BACKENDS: dict[str, Backend] = {
    "torch": Backend("densekit.encoders.torch_backend"),
    "onnx": Backend("densekit.encoders.onnx_backend", ("onnx", "onnxruntime"), "onnx"),
    "openvino": Backend("densekit.encoders.openvino_backend", ("openvino",), "openvino"),
    "jax": Backend("densekit.encoders.jax_backend", ("jax", "flax", "optax"), "jax"),
}


def register_backend(
    name: str, module: str, requires: tuple[str, ...] = (), extra: str | None = None
) -> None:
    """Add (or replace) a backend: ``module`` must define ``load(spec: EncoderSpec)``."""
    _BACKENDS[name] = Backend(module, tuple(requires), extra)


def backend_names() -> list[str]:
    """Every registered backend, installed or not (for ``--backend`` choices)."""
    return list(_BACKENDS)


def available_backends() -> dict[str, str]:
    """Each backend's state: ``"available"`` or the line that installs what it lacks."""
    states = {}
    for name, backend in _BACKENDS.items():
        missing = backend.missing()
        states[name] = (
            "available" if not missing else f"missing {', '.join(missing)}: {backend.hint()}"
        )
    return states


def require_backend(name: str) -> Backend:
    """The registry entry for ``name``, or one line saying what is wrong with it."""
    if name not in _BACKENDS:
        raise ConfigError(f"--backend {name!r}: expected one of {', '.join(_BACKENDS)}")
    backend = _BACKENDS[name]
    missing = backend.missing()
    if missing:
        raise ConfigError(
            f"the {name} backend needs the {', '.join(missing)} package(s): {backend.hint()}"
        )
    return backend


def check_backend(spec: EncoderSpec) -> None:
    """Refuse, before any data or weights are read, a spec its backend cannot run.

    A backend module may define ``check(spec)`` for what its flags and the model folder alone
    show (a quantization it lacks, a device it cannot use); packages are checked for all.
    """
    module = importlib.import_module(require_backend(spec.backend).module)
    check = getattr(module, "check", None)
    if check is not None:
        check(spec)


def load_encoder(spec: EncoderSpec) -> TextEncoder:
    """The encoder ``spec`` describes, built by its backend."""
    check_backend(spec)
    return importlib.import_module(_BACKENDS[spec.backend].module).load(spec)
