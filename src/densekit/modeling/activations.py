"""The activation after the projection, as sentence-transformers' ``Dense`` applies it.

ST saves ``Dense.activation_function`` as a dotted class path (``torch.nn.modules.activation.
Tanh``) and rebuilds it with no arguments. densekit keeps the class name (``Tanh``; ``None`` for
identity) in its settings and applies it in ``represent``, so every backend applies it. Only
``torch.nn`` activations without parameters are read: anything else would not be the function ST
applies (ST itself falls back to Tanh for paths outside ``torch.``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from torch import nn

from densekit.errors import ConfigError

ST_IDENTITY = "torch.nn.modules.linear.Identity"
_ACTIVATIONS = "torch.nn.modules.activation"


def activation_name(path: str, source: str | Path = "activation") -> str | None:
    """densekit's name for an activation given as ST's dotted path or a bare ``torch.nn`` name."""
    short = str(path).rsplit(".", 1)[-1]
    cls = getattr(nn, short, None)
    if cls is nn.Identity and path in (short, "torch.nn.Identity", ST_IDENTITY):
        return None
    spelled = path in (short, f"torch.nn.{short}", f"{_ACTIVATIONS}.{short}")
    if not (spelled and isinstance(cls, type) and cls.__module__ == _ACTIVATIONS):
        raise ConfigError(
            f"{source}: Dense activation {path!r} is not supported by densekit "
            "(torch.nn activations only)"
        )
    if any(True for _ in cls().parameters()):
        raise ConfigError(
            f"{source}: Dense activation {short} has weights, which sentence-transformers "
            "does not restore: not supported by densekit"
        )
    return short


def st_path(name: str | None) -> str:
    """The dotted path sentence-transformers writes for densekit's activation ``name``."""
    short = None if name is None else activation_name(name)
    return ST_IDENTITY if short is None else f"{_ACTIVATIONS}.{short}"


@cache
def activation(name: str) -> nn.Module:
    """The (stateless) module for densekit's activation ``name``, built once."""
    short = activation_name(name, "projection_activation")
    return nn.Identity() if short is None else getattr(nn, short)()
