"""A Flax (Linen) encoder for the BERT family: BERT, MiniLM, RoBERTa, XLM-RoBERTa.

Transformers 5 ships no Flax models, so the JAX path has its own. It computes what Hugging
Face's torch ``BertModel``/``RobertaModel`` compute (post-LayerNorm blocks, exact or tanh GELU,
absolute positions, RoBERTa's positions after the padding index) so weights load unchanged and
vectors agree with the torch path; parameters are float32, ``dtype`` is the compute dtype
(bfloat16 for the bf16 option; softmax, LayerNorm statistics, pooling and the loss stay fp32).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from densekit.errors import ConfigError

SUPPORTED_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")
_ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert")
_ACTIVATIONS = {
    "gelu": partial(jax.nn.gelu, approximate=False),
    "gelu_new": partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
}


@dataclass(frozen=True)
class BertSpec:
    """The architecture numbers of a BERT-family ``config.json`` (hashable: a static argument)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    activation: str
    hidden_dropout: float
    attention_dropout: float
    position_offset: int  # RoBERTa numbers positions from padding_idx + 1

    @classmethod
    def from_hf(cls, config: dict[str, Any], source: str) -> BertSpec:
        """The spec of a Hugging Face config, or one line saying why the JAX path cannot run it."""
        kind = config.get("model_type")
        if kind not in SUPPORTED_TYPES:
            raise ConfigError(
                f"{source}: model_type {kind!r} has no Flax encoder in densekit "
                f"(supported: {', '.join(SUPPORTED_TYPES)}); use the torch path"
            )
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"{source}: only absolute position embeddings run on the JAX path")
        activation = config.get("hidden_act", "gelu")
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"{source}: activation {activation!r} is not on the JAX path")
        offset = int(config.get("pad_token_id", 1)) + 1 if kind in _ROBERTA_LIKE else 0
        return cls(
            vocab_size=int(config["vocab_size"]),
            hidden_size=int(config["hidden_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=int(config["num_attention_heads"]),
            intermediate_size=int(config["intermediate_size"]),
            max_positions=int(config["max_position_embeddings"]),
            type_vocab_size=int(config.get("type_vocab_size", 2)),
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
            activation=activation,
            hidden_dropout=float(config.get("hidden_dropout_prob", 0.1)),
            attention_dropout=float(config.get("attention_probs_dropout_prob", 0.1)),
            position_offset=offset,
        )

    @property
    def max_length(self) -> int:
        """The longest input the position table holds."""
        return self.max_positions - self.position_offset


class _Layer(nn.Module):
    """One post-LayerNorm transformer block, named as Hugging Face's parts (see weights.py)."""

    spec: BertSpec
    dtype: Any
    deterministic: bool

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        spec, dense = self.spec, partial(nn.Dense, dtype=self.dtype)
        norm = partial(nn.LayerNorm, epsilon=spec.layer_norm_eps, dtype=self.dtype)
        drop = partial(nn.Dropout, deterministic=self.deterministic)
        head_dim = spec.hidden_size // spec.num_heads

        def heads(name: str) -> jax.Array:
            return dense(spec.hidden_size, name=name)(x).reshape(*x.shape[:2], spec.num_heads, -1)

        q, k, v = heads("query"), heads("key"), heads("value")
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        scores = scores / jnp.sqrt(jnp.float32(head_dim))
        scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
        probs = drop(spec.attention_dropout)(jax.nn.softmax(scores, axis=-1))
        context = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v).reshape(x.shape)
        attended = drop(spec.hidden_dropout)(
            dense(spec.hidden_size, name="attention_output")(context)
        )
        x = norm(name="attention_norm")(x + attended)
        inner = _ACTIVATIONS[spec.activation](dense(spec.intermediate_size, name="intermediate")(x))
        out = drop(spec.hidden_dropout)(dense(spec.hidden_size, name="output")(inner))
        return norm(name="output_norm")(x + out)


class BertEncoder(nn.Module):
    """Token ids -> last hidden states ``[batch, seq, hidden]``.

    Positions count from each row's first real token, so left and right padding give a text the
    same states (as the torch encoder's ``position_ids``). ``remat`` recomputes each block's
    activations in the backward pass (``--gradient_checkpointing``).
    """

    spec: BertSpec
    dtype: Any = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        token_type_ids: jax.Array,
        deterministic: bool = True,
    ) -> jax.Array:
        spec = self.spec
        embed = partial(nn.Embed, features=spec.hidden_size, dtype=self.dtype)
        positions = spec.position_offset + jnp.maximum(jnp.cumsum(attention_mask, axis=1) - 1, 0)
        x = (
            embed(spec.vocab_size, name="word_embeddings")(input_ids)
            + embed(spec.max_positions, name="position_embeddings")(positions)
            + embed(spec.type_vocab_size, name="token_type_embeddings")(token_type_ids)
        )
        x = nn.LayerNorm(epsilon=spec.layer_norm_eps, dtype=self.dtype, name="embeddings_norm")(x)
        x = nn.Dropout(spec.hidden_dropout, deterministic=deterministic)(x)
        layer = nn.remat(_Layer) if self.remat else _Layer
        mask = attention_mask.astype(bool)
        for index in range(spec.num_layers):
            x = layer(spec, self.dtype, deterministic, name=f"layer_{index}")(x, mask)
        return x


def _softplus(x: jax.Array) -> jax.Array:
    """torch's ``Softplus()``: ``log(1 + e^x)``, linear above 20."""
    return jnp.where(x > 20, x, jax.nn.softplus(x))


# torch.nn activations (built with no arguments, as sentence-transformers' Dense does) in jnp.
ACTIVATIONS: dict[str, Any] = {
    "Tanh": jnp.tanh,
    "ReLU": jax.nn.relu,
    "Sigmoid": jax.nn.sigmoid,
    "GELU": partial(jax.nn.gelu, approximate=False),
    "SiLU": jax.nn.silu,
    "ELU": jax.nn.elu,
    "CELU": jax.nn.celu,
    "SELU": jax.nn.selu,
    "LeakyReLU": partial(jax.nn.leaky_relu, negative_slope=0.01),
    "ReLU6": jax.nn.relu6,
    "Hardtanh": lambda x: jnp.clip(x, -1.0, 1.0),
    "Hardsigmoid": jax.nn.hard_sigmoid,
    "Hardswish": jax.nn.hard_swish,
    "Softplus": _softplus,
    "Softsign": jax.nn.soft_sign,
    "LogSigmoid": jax.nn.log_sigmoid,
    "Tanhshrink": lambda x: x - jnp.tanh(x),
    "Mish": lambda x: x * jnp.tanh(_softplus(x)),
    "GLU": partial(jax.nn.glu, axis=-1),
}


@dataclass(frozen=True)
class Head:
    """What turns token states into the vector: pooling, optional projection (and the
    activation after it, a ``torch.nn`` class name as in ``EncoderConfig``), normalization."""

    pooling: str = "cls"
    normalize: bool = False
    projection_activation: str | None = None

    def __post_init__(self) -> None:
        name = self.projection_activation
        if name is not None and name not in ACTIVATIONS:
            raise ConfigError(
                f"projection activation {name} has no JAX counterpart here (known: "
                f"{', '.join(ACTIVATIONS)}); encode this model with the torch backend"
            )


def pool(hidden: jax.Array, mask: jax.Array, mode: str) -> jax.Array:
    """``cls`` (first real token), ``last`` (last real token) or masked ``mean``, in fp32."""
    hidden = hidden.astype(jnp.float32)
    rows = jnp.arange(hidden.shape[0])
    if mode == "cls":
        return hidden[rows, jnp.argmax(mask, axis=1)]
    if mode == "last":
        return hidden[rows, mask.shape[1] - 1 - jnp.argmax(mask[:, ::-1], axis=1)]
    if mode == "mean":
        weights = mask.astype(jnp.float32)[..., None]
        return (hidden * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1e-9)
    raise ConfigError(f"unknown pooling {mode!r}; expected cls, mean or last")


def represent(
    model: BertEncoder,
    tower: Any,
    projection: Any,
    head: Head,
    batch: dict[str, jax.Array],
    rng: jax.Array | None = None,
) -> jax.Array:
    """Vectors of one tokenized batch: backbone, pooling, projection, normalization.

    ``rng`` given means training (dropout on); ``projection`` is ``{"kernel", "bias"}`` or None.
    """
    mask = batch["attention_mask"]
    hidden = model.apply(
        {"params": tower},
        batch["input_ids"],
        mask,
        batch["token_type_ids"],
        deterministic=rng is None,
        rngs=None if rng is None else {"dropout": rng},
    )
    reps = pool(hidden, mask, head.pooling)
    if projection is not None:
        reps = reps @ projection["kernel"] + projection["bias"]
        if head.projection_activation is not None:
            reps = ACTIVATIONS[head.projection_activation](reps)
    if head.normalize:
        reps = reps / jnp.maximum(jnp.linalg.norm(reps, axis=-1, keepdims=True), 1e-12)
    return reps
