"""One training step on the JAX path: optax AdamW, plain or GradCache gradients, jitted once.

The optimizer reproduces the torch path's Hugging Face Trainer: AdamW without decay on biases
and LayerNorm weights, gradients clipped to ``--max_grad_norm``, the learning-rate schedule of
``--lr_scheduler_type`` with ``--warmup_steps``/``--warmup_ratio``, and gradient accumulation
as the mean over micro-steps (``optax.MultiSteps``).

GradCache (Gao et al., 2021) in JAX: the vectors of the whole batch are computed chunk by chunk
without a graph (``lax.map``), the loss's gradient with respect to them is taken once, then each
chunk is encoded again under ``jax.vjp`` and its slice of those gradients pulled back to the
parameters (``lax.scan``), so activations of one chunk are alive at a time. Each chunk keeps its
dropout key across both passes, so the gradient is the full-batch gradient exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from densekit.errors import ConfigError
from densekit.jax.sharding import DataParallel

SCHEDULES = ("linear", "constant", "constant_with_warmup", "cosine")
_NO_DECAY = ("bias", "scale")  # biases and LayerNorm weights, as the HF Trainer


@flax.struct.dataclass
class TrainState:
    """Everything a step changes: micro-steps done, parameters, optimizer state."""

    step: jax.Array
    params: Any
    opt_state: Any

    @classmethod
    def create(cls, params: Any, tx: optax.GradientTransformation) -> TrainState:
        params = jax.tree.map(jnp.asarray, params)
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def schedule(kind: str, learning_rate: float, warmup: int, total: int) -> optax.Schedule:
    """The Hugging Face schedule ``kind`` over ``total`` optimizer updates."""
    if kind not in SCHEDULES:
        raise ConfigError(
            f"--lr_scheduler_type {kind} is not on the JAX path ({', '.join(SCHEDULES)})"
        )
    ramp = optax.linear_schedule(0.0, learning_rate, max(warmup, 1))
    if kind == "constant":
        return optax.constant_schedule(learning_rate)
    if kind == "constant_with_warmup":
        after = optax.constant_schedule(learning_rate)
    elif kind == "linear":
        after = optax.linear_schedule(learning_rate, 0.0, max(total - warmup, 1))
    else:
        after = optax.cosine_decay_schedule(learning_rate, max(total - warmup, 1))
    return optax.join_schedules([ramp, after], [warmup])


def decay_mask(params: Any) -> Any:
    """True where weight decay applies: not on biases nor LayerNorm scales."""
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key not in _NO_DECAY, params)


def make_optimizer(args: Any, total_updates: int) -> optax.GradientTransformation:
    """AdamW with clipping, schedule and accumulation from ``RetrievalTrainingArguments``."""
    optim = str(getattr(args.optim, "value", args.optim))
    if not optim.startswith("adamw"):
        raise ConfigError(f"--optim {optim} is not on the JAX path (AdamW only)")
    kind = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    warmup = args.get_warmup_steps(total_updates)
    adamw = optax.adamw(
        schedule(kind, args.learning_rate, warmup, total_updates),
        b1=args.adam_beta1,
        b2=args.adam_beta2,
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
        mask=decay_mask,
    )
    parts = [optax.clip_by_global_norm(args.max_grad_norm)] if args.max_grad_norm else []
    tx = optax.chain(*parts, adamw)
    if args.gradient_accumulation_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=args.gradient_accumulation_steps)
    return tx


def _chunk(x: jax.Array, devices: int, size: int) -> jax.Array:
    """``[rows, ...]`` -> ``[chunks, devices*size, ...]``: chunk k holds rows k*size..(k+1)*size-1
    of every device's part, so each chunk stays split over the devices."""
    per = x.shape[0] // devices
    x = x.reshape(devices, per // size, size, *x.shape[1:]).swapaxes(0, 1)
    return x.reshape(per // size, devices * size, *x.shape[3:])


def _unchunk(x: jax.Array, devices: int, size: int) -> jax.Array:
    """The inverse of :func:`_chunk`."""
    x = x.reshape(x.shape[0], devices, size, *x.shape[2:]).swapaxes(0, 1)
    return x.reshape(-1, *x.shape[3:])


def chunk_size(rows_per_device: int, requested: int, flag: str) -> int:
    """The GradCache chunk for ``rows_per_device`` rows: at most all of them, and a divisor."""
    size = min(requested, rows_per_device)
    if rows_per_device % size:
        raise ConfigError(
            f"{flag} {requested} must divide the {rows_per_device} rows each device encodes"
        )
    return size


class StepBuilder:
    """Builds the jitted ``step(state, queries, passages) -> (state, loss)``.

    ``vectors(params, batch, is_query, rng)`` encodes; ``loss_fn(q, p)`` scores the global
    batch; ``grad_cache`` is ``(query chunk, passage chunk)`` rows per device, or None;
    ``dropout`` off gives deterministic steps (the tests compare with torch in eval mode).
    """

    def __init__(
        self,
        vectors: Callable,
        loss_fn: Callable,
        tx: optax.GradientTransformation,
        placement: DataParallel,
        grad_cache: tuple[int, int] | None = None,
        dropout: bool = True,
        seed: int = 42,
    ) -> None:
        self.vectors, self.loss_fn, self.tx = vectors, loss_fn, tx
        self.placement, self.grad_cache = placement, grad_cache
        self.dropout, self.seed = dropout, seed

    def _keys(self, step: jax.Array) -> tuple[Any, Any]:
        if not self.dropout:
            return None, None
        key = jax.random.fold_in(jax.random.key(self.seed), step)
        return tuple(jax.random.split(key))

    def loss_and_grads(self, params: Any, queries: dict, passages: dict, step: jax.Array):
        """Loss and parameter gradients of one batch (plain backward)."""
        kq, kp = self._keys(step)

        def loss(prm: Any) -> jax.Array:
            q = self.vectors(prm, queries, True, kq)
            return self.loss_fn(q, self.vectors(prm, passages, False, kp))

        return jax.value_and_grad(loss)(params)

    def cached_loss_and_grads(self, params: Any, queries: dict, passages: dict, step: jax.Array):
        """The same loss and gradients computed GradCache's way, chunk by chunk."""
        devices, (q_size, p_size) = self.placement.size, self.grad_cache
        sharding = self.placement.chunked()

        def chunks(tree: Any, size: int) -> Any:
            return jax.tree.map(
                lambda x: jax.lax.with_sharding_constraint(_chunk(x, devices, size), sharding),
                tree,
            )

        q_chunks, p_chunks = chunks(queries, q_size), chunks(passages, p_size)
        count_q = q_chunks["input_ids"].shape[0]
        count_p = p_chunks["input_ids"].shape[0]
        kq, kp = self._keys(step)
        q_keys = jax.random.split(kq, count_q) if kq is not None else jnp.zeros(count_q)
        p_keys = jax.random.split(kp, count_p) if kp is not None else jnp.zeros(count_p)

        def encode(is_query: bool) -> Callable:
            def run(prm: Any, chunk: dict, key: Any) -> jax.Array:
                return self.vectors(prm, chunk, is_query, key if self.dropout else None)

            return run

        q_reps = jax.lax.map(lambda xs: encode(True)(params, *xs), (q_chunks, q_keys))
        p_reps = jax.lax.map(lambda xs: encode(False)(params, *xs), (p_chunks, p_keys))
        q_all, p_all = _unchunk(q_reps, devices, q_size), _unchunk(p_reps, devices, p_size)
        loss, (q_grad, p_grad) = jax.value_and_grad(self.loss_fn, argnums=(0, 1))(q_all, p_all)

        def pull_back(is_query: bool) -> Callable:
            def body(acc: Any, xs: tuple) -> tuple[Any, None]:
                chunk, key, grad = xs
                _, vjp = jax.vjp(lambda prm: encode(is_query)(prm, chunk, key), params)
                return jax.tree.map(jnp.add, acc, vjp(grad)[0]), None

            return body

        grads = jax.tree.map(jnp.zeros_like, params)
        grads, _ = jax.lax.scan(pull_back(True), grads, (q_chunks, q_keys, chunks(q_grad, q_size)))
        grads, _ = jax.lax.scan(pull_back(False), grads, (p_chunks, p_keys, chunks(p_grad, p_size)))
        return loss, grads

    def step(self, state: TrainState, queries: dict, passages: dict) -> tuple[TrainState, Any]:
        """One micro-step: gradients, then the optimizer (which may only accumulate)."""
        compute = self.cached_loss_and_grads if self.grad_cache else self.loss_and_grads
        loss, grads = compute(state.params, queries, passages, state.step)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), loss

    def jitted(self) -> Callable:
        """``step`` compiled once; the state stays replicated and its old buffers are reused."""
        replicated = self.placement.replicated
        return jax.jit(self.step, out_shardings=(replicated, replicated), donate_argnums=(0,))
