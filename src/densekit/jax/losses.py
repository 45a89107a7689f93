"""The loss registry's InfoNCE and Matryoshka in ``jax.numpy`` (the same math as
``densekit.modeling.losses``, which the tests check them against).

``q`` is ``[n, d]`` and ``p`` ``[n * group, d]`` with query i's passages at rows
``i*group .. i*group+group-1``, positive first; on the JAX path these are the *global* batch's
vectors, so every device's passages are negatives for every query.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import optax

from densekit.errors import ConfigError

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
JAX_LOSSES = ("infonce", "matryoshka")


def infonce(
    q: jax.Array,
    p: jax.Array,
    temperature: float = 1.0,
    margin: float = 0.0,
    use_inbatch_neg: bool = True,
    symmetric: bool = False,
) -> jax.Array:
    """Cross-entropy of each query over the batch's passages (or its own group), positive the
    target; ``margin`` is taken off the positive's score before the temperature."""
    n = q.shape[0]
    group = p.shape[0] // n
    targets = jnp.arange(n) * group
    if use_inbatch_neg:
        scores = jnp.einsum("nd,md->nm", q, p, preferred_element_type=jnp.float32)
    else:
        grouped = p.reshape(n, group, -1)
        scores = jnp.einsum("nd,ngd->ng", q, grouped, preferred_element_type=jnp.float32)
        targets = jnp.zeros_like(targets)
    if margin:
        scores = scores - margin * jax.nn.one_hot(targets, scores.shape[1], dtype=scores.dtype)
    loss = optax.softmax_cross_entropy_with_integer_labels(scores / temperature, targets).mean()
    if symmetric:
        back = jnp.einsum("nd,md->nm", p[::group], q, preferred_element_type=jnp.float32)
        back_loss = optax.softmax_cross_entropy_with_integer_labels(
            back / temperature, jnp.arange(n)
        ).mean()
        loss = (loss + back_loss) / 2
    return loss


def matryoshka(
    q: jax.Array,
    p: jax.Array,
    base: LossFn,
    dims: list[int],
    weights: list[float],
    normalize: bool,
) -> jax.Array:
    """``base`` on leading slices of the vectors, weighted; prefixes renormalized when the
    model normalizes; dimensions above the vector size skipped."""
    terms = [(d, w) for d, w in zip(dims, weights, strict=True) if d <= q.shape[-1]]
    if not terms:
        raise ConfigError(f"no --matryoshka_dims value fits the vector size {q.shape[-1]}")
    total = jnp.zeros((), jnp.float32)
    for dim, weight in terms:
        qd, pd = q[:, :dim], p[:, :dim]
        if normalize:
            qd = qd / jnp.maximum(jnp.linalg.norm(qd, axis=-1, keepdims=True), 1e-12)
            pd = pd / jnp.maximum(jnp.linalg.norm(pd, axis=-1, keepdims=True), 1e-12)
        total = total + weight * base(qd, pd)
    return total


def _numbers(value: str | None) -> list[float] | None:
    return None if value is None else [float(v) for v in str(value).split(",") if v.strip()]


def loss_from_args(model_args, settings) -> LossFn:
    """The loss ``ModelArguments`` name at the encoder's temperature: InfoNCE (margin,
    in-batch negatives, symmetric) optionally wrapped in Matryoshka; others refused."""
    name = model_args.loss or "infonce"
    if name not in JAX_LOSSES:
        raise ConfigError(
            f"--loss {name} is not on the JAX path ({', '.join(JAX_LOSSES)}); use densekit train"
        )
    base = partial(
        infonce,
        temperature=settings.temperature,
        margin=model_args.margin,
        use_inbatch_neg=model_args.use_inbatch_neg,
        symmetric=model_args.symmetric_loss,
    )
    if not (model_args.use_matryoshka or name == "matryoshka"):
        return base
    dims = [int(d) for d in _numbers(model_args.matryoshka_dims)]
    weights = _numbers(model_args.matryoshka_loss_weights) or [1.0] * len(dims)
    if len(weights) != len(dims):
        raise ConfigError(
            f"--matryoshka_dims has {len(dims)} values but "
            f"--matryoshka_loss_weights has {len(weights)}"
        )
    return partial(matryoshka, base=base, dims=dims, weights=weights, normalize=settings.normalize)
