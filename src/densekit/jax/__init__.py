"""The JAX/Flax path (TPU, GPU, CPU): a Flax BERT-family encoder, its training step and drivers.

jax, flax, optax and orbax are the optional extra ``densekit[jax]``; every module here imports
them at module level, so import this package's modules through :func:`require_jax` first (the
commands do) to turn a missing extra into one clear line.
"""

from __future__ import annotations

import importlib

from densekit.errors import ConfigError

_NEEDED = ("jax", "flax", "optax", "orbax.checkpoint")


def require_jax() -> None:
    """Raise a ConfigError naming the extra when jax, flax, optax or orbax is missing."""
    for name in _NEEDED:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"the JAX path needs {name} ({exc}): pip install 'densekit[jax]'"
            ) from None
