"""The JAX bi-encoder: one or two Flax BERT towers, pooling, projection, normalization.

Settings come from the same place as the torch encoder's (flags over ``densekit_config.json``
over sentence-transformers files, see ``modeling.config``), so both paths format, pool and
normalize a text alike. :meth:`JaxEncoder.encode` takes and returns torch tensors: densekit's
encoding loop (``inference.encode``) runs it unchanged. Batches are padded to a few fixed
shapes so XLA compiles each shape once.
"""

from __future__ import annotations

import copy
import logging
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from densekit.errors import ConfigError
from densekit.jax.bert import BertEncoder, Head, represent
from densekit.jax.sharding import DataParallel
from densekit.jax.weights import (
    Tower,
    fresh_projection,
    projection_linear,
    projection_params,
    read_tower,
    write_tower,
)
from densekit.modeling import st_format
from densekit.modeling.config import EncoderConfig, resolve_config
from densekit.modeling.folders import POOLER_FILE, ModelFolder, read_folder
from densekit.resources import looks_local

logger = logging.getLogger(__name__)

_TOWERS = ("query_model", "passage_model")


def tower_params(params: dict[str, Any], is_query: bool) -> Any:
    """The backbone parameters that encode queries (or passages); one tree when tied."""
    return params["query"] if is_query or "passage" not in params else params["passage"]


def encode_fn(model: BertEncoder, head: Head, params, batch, is_query: bool, rng=None):
    """Vectors of a batch of queries or passages (pure: jit it, differentiate it)."""
    tower = tower_params(params, is_query)
    return represent(model, tower, params.get("projection"), head, batch, rng)


def padded_length(length: int, limit: int) -> int:
    """The padded sequence length for ``length`` tokens: one of 16, 24, 32, 48, 64, 96, ...

    A few shapes bound XLA's compilations; ``limit`` (the max length) caps the padding.
    """
    bucket = 16
    while bucket < length:
        bucket = bucket * 3 // 2 if bucket & (bucket - 1) == 0 else bucket * 4 // 3
    return max(min(bucket, limit), length)


def _local_folder(path: str, cache_dir: str | None) -> Path:
    """A local model folder, downloading a hub name's files when it is not one."""
    folder = Path(path)
    if folder.is_dir():
        return folder
    if looks_local(path):
        raise ConfigError(f"model folder {path} does not exist")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(path, cache_dir=cache_dir))
    except Exception as exc:  # offline, unknown repo, network: one line either way
        raise ConfigError(f"cannot load model {path!r}: {str(exc).splitlines()[0]}") from None


class JaxEncoder:
    """Query/passage towers (shared unless untied) and the settings that make their vectors."""

    def __init__(
        self,
        settings: EncoderConfig,
        towers: dict[str, Tower],
        params: dict[str, Any],
        dtype: Any = jnp.float32,
        remat: bool = False,
    ) -> None:
        self.settings = settings
        self.towers = towers
        self.params = params
        self.model = BertEncoder(towers["query"].spec, dtype, remat)
        self.head = Head(settings.pooling, settings.normalize, settings.projection_activation)
        self.placement = DataParallel(jax.local_devices())
        self._jit = jax.jit(partial(encode_fn, self.model, self.head), static_argnums=(2,))
        self._placed: tuple[int, Any] | None = None
        self._rows = 0

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        cache_dir: str | None = None,
        dtype: Any = jnp.float32,
        remat: bool = False,
        seed: int = 42,
        **given: Any,
    ) -> JaxEncoder:
        """A BERT-family model in any folder ``modeling.folders`` reads, or a hub name.

        ``given`` are ``EncoderConfig`` fields (``None`` = the folder's) plus ``add_pooler``;
        ``untie_encoder`` on a one-tower folder starts both towers from its weights.
        """
        add_pooler = bool(given.pop("add_pooler", False))
        folder = read_folder(_local_folder(path, cache_dir))
        if folder.adapter_base is not None:
            raise ConfigError(
                f"{path} is a LoRA adapter: run `densekit merge-lora` first for the JAX path"
            )
        settings = resolve_config(folder, **given)
        Head(settings.pooling, settings.normalize, settings.projection_activation)  # checked
        towers = {"query": read_tower(folder.towers[0])}
        params: dict[str, Any] = {"query": towers["query"].params}
        if settings.untie_encoder:  # saved untied towers, or one tower to start both from
            towers["passage"] = read_tower(folder.towers[1]) if folder.untied else towers["query"]
            params["passage"] = copy.deepcopy(towers["passage"].params)
        _clamp_lengths(settings, towers["query"].spec.max_length)
        hidden = towers["query"].spec.hidden_size
        if add_pooler and settings.projection_out_dim is None:
            settings.projection_out_dim = hidden
        if settings.has_pooler:
            settings.projection_in_dim = settings.projection_in_dim or hidden
            params["projection"] = _projection(folder, settings, seed)
        if settings.base_model_name_or_path is None:
            settings.base_model_name_or_path = str(path)
        return cls(settings, towers, params, dtype, remat)

    # ------------------------------------------------------------------ text

    def format_query(self, text: str, **kwargs: Any) -> str:
        return self.settings.format_query(text, **kwargs)

    def format_passage(self, text: str, title: str | None = None, **kwargs: Any) -> str:
        return self.settings.format_passage(text, title, **kwargs)

    @property
    def tied(self) -> bool:
        return "passage" not in self.params

    # ------------------------------------------------------------------ encoding

    def vectors(self, params: dict[str, Any], batch: dict, is_query: bool, rng=None) -> jax.Array:
        """Traceable vectors of a batch under ``params`` (the training step calls this)."""
        return encode_fn(self.model, self.head, params, batch, is_query, rng)

    def encode(self, batch: dict[str, torch.Tensor], is_query: bool) -> torch.Tensor:
        """densekit's encoder interface: torch token tensors in, float32 vectors out."""
        ids = batch["input_ids"].numpy()
        rows, length = ids.shape
        limit = self.settings.query_max_len if is_query else self.settings.passage_max_len
        width = padded_length(length, limit)
        self._rows = max(self._rows, rows)
        height = -(-self._rows // self.placement.local) * self.placement.local
        arrays = {
            "input_ids": ids,
            "attention_mask": batch["attention_mask"].numpy(),
            "token_type_ids": (
                batch["token_type_ids"].numpy() if "token_type_ids" in batch else np.zeros_like(ids)
            ),
        }
        padded = {
            key: np.pad(value.astype(np.int32), ((0, height - rows), (0, width - length)))
            for key, value in arrays.items()
        }
        out = self._jit(self._device_params(), self.placement.global_batch(padded), is_query)
        return torch.from_numpy(np.asarray(out)[:rows].copy())

    def _device_params(self) -> Any:
        if self._placed is None or self._placed[0] != id(self.params):
            self._placed = (id(self.params), self.placement.replicate(self.params))
        return self._placed[1]

    # ------------------------------------------------------------------ saving

    def save_pretrained(
        self, path: str | Path, tokenizer: Any = None, params: dict[str, Any] | None = None
    ) -> None:
        """The torch encoder's folder layout: tower(s), ``pooler.safetensors``, tokenizer,
        ``densekit_config.json`` and sentence-transformers files (``params``: trained ones)."""
        params = self.params if params is None else params
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        if self.tied:
            write_tower(self.towers["query"], params["query"], folder)
        else:
            write_tower(self.towers["query"], params["query"], folder / _TOWERS[0])
            write_tower(self.towers["passage"], params["passage"], folder / _TOWERS[1])
        linear = None
        if "projection" in params:
            from safetensors.torch import save_file

            linear = projection_linear(params["projection"])
            state = {k: v.detach().contiguous() for k, v in linear.state_dict().items()}
            save_file(state, str(folder / POOLER_FILE))
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        self.settings.save(folder)
        hidden = self.towers["query"].spec.hidden_size
        st_format.write_files(folder, self.settings, hidden, linear, self.tied)


def _projection(folder: ModelFolder, settings: EncoderConfig, seed: int) -> dict[str, np.ndarray]:
    """The projection's weights: the folder's (densekit, Tevatron v1, ST Dense), or new ones."""
    if folder.projection is not None:
        return projection_params(folder.projection())
    return fresh_projection(settings.projection_in_dim, settings.projection_out_dim, seed)


def _clamp_lengths(settings: EncoderConfig, limit: int) -> None:
    """Cap max lengths at what the position table holds (as the torch encoder does)."""
    for name in ("query_max_len", "passage_max_len"):
        if getattr(settings, name) > limit:
            logger.warning(
                "%s %d exceeds the model's %d positions: using %d",
                name,
                getattr(settings, name),
                limit,
                limit,
            )
            setattr(settings, name, limit)
