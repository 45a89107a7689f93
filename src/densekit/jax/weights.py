"""Hugging Face BERT-family weights <-> the Flax encoder's parameters, both ways.

A tower is read from its folder's ``config.json`` and safetensors (or ``pytorch_model.bin``,
tensors only); every tensor the encoder does not use (the BERT pooler, ``position_ids``, an
MLM head) is kept as read and written back, and names keep their prefix (``bert.`` ...), so a
folder saved here loads in ``AutoModel``, densekit's torch encoder and sentence-transformers
exactly as the folder it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from densekit.errors import ConfigError
from densekit.jax.bert import BertSpec

WEIGHTS = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
_WORD = "embeddings.word_embeddings.weight"
# (Hugging Face module, Flax module, kind); {i} is the layer number.
_EMBEDDINGS = [
    ("embeddings.word_embeddings", "word_embeddings", "embed"),
    ("embeddings.position_embeddings", "position_embeddings", "embed"),
    ("embeddings.token_type_embeddings", "token_type_embeddings", "embed"),
    ("embeddings.LayerNorm", "embeddings_norm", "norm"),
]
_LAYER = [
    ("attention.self.query", "query", "dense"),
    ("attention.self.key", "key", "dense"),
    ("attention.self.value", "value", "dense"),
    ("attention.output.dense", "attention_output", "dense"),
    ("attention.output.LayerNorm", "attention_norm", "norm"),
    ("intermediate.dense", "intermediate", "dense"),
    ("output.dense", "output", "dense"),
    ("output.LayerNorm", "output_norm", "norm"),
]
# Flax parameter -> the Hugging Face tensor names it may be stored under (old BERTs: gamma/beta).
_PARTS = {
    "embed": {"embedding": ("weight",)},
    "norm": {"scale": ("weight", "gamma"), "bias": ("bias", "beta")},
    "dense": {"kernel": ("weight",), "bias": ("bias",)},
}


@dataclass
class Tower:
    """One backbone as read: its architecture, what to write back, and its Flax parameters."""

    spec: BertSpec
    config: dict[str, Any]
    params: dict[str, Any]
    prefix: str = ""
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    names: dict[tuple[str, str], str] = field(default_factory=dict)  # (module, param) -> HF name


def _modules(num_layers: int) -> list[tuple[str, str, str | None, str]]:
    """``(HF module, Flax module, Flax submodule or None, kind)`` for every weighted module."""
    embeddings = [(hf, flax, None, kind) for hf, flax, kind in _EMBEDDINGS]
    layers = [
        (f"encoder.layer.{i}.{hf}", f"layer_{i}", flax, kind)
        for i in range(num_layers)
        for hf, flax, kind in _LAYER
    ]
    return embeddings + layers


def _read_tensors(folder: Path) -> dict[str, np.ndarray]:
    """Every tensor of a folder's weights as numpy (floats as float32)."""
    if (folder / WEIGHTS).is_file():
        state = load_file(str(folder / WEIGHTS))
    elif (folder / SHARD_INDEX).is_file():
        index = json.loads((folder / SHARD_INDEX).read_text(encoding="utf-8"))
        state = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_file(str(folder / shard)))
    elif (folder / TORCH_BIN).is_file():
        state = torch.load(folder / TORCH_BIN, map_location="cpu", weights_only=True)
    else:
        raise ConfigError(f"{folder}: no {WEIGHTS}, {SHARD_INDEX} or {TORCH_BIN}")
    return {name: (t.float() if t.is_floating_point() else t).numpy() for name, t in state.items()}


def read_tower(folder: str | Path) -> Tower:
    """The Flax parameters of the BERT-family model in ``folder`` (and what else it holds)."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{folder}: no config.json (not a Hugging Face model folder)")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    spec = BertSpec.from_hf(config, str(folder))
    tensors = _read_tensors(folder)
    word = [name for name in tensors if name.endswith(_WORD)]
    if len(word) != 1:
        raise ConfigError(f"{folder}: expected one {_WORD} tensor, found {len(word)}")
    prefix = word[0][: -len(_WORD)]
    names: dict[tuple[str, str], str] = {}
    for hf, _, _, kind in _modules(spec.num_layers):
        for param, candidates in _PARTS[kind].items():
            found = [f"{prefix}{hf}.{c}" for c in candidates if f"{prefix}{hf}.{c}" in tensors]
            if not found:
                raise ConfigError(f"{folder}: weight {prefix}{hf}.{candidates[0]} is missing")
            names[(hf, param)] = found[0]
    tower = Tower(spec, config, {}, prefix, tensors, names)
    tower.params = params_from_state(tower, tensors)
    for name in names.values():
        del tensors[name]  # what is left is written back as read
    return tower


def params_from_state(tower: Tower, state: dict[str, np.ndarray]) -> dict[str, Any]:
    """The Flax parameter tree of a Hugging Face state dict (linear weights transposed)."""
    params: dict[str, Any] = {}
    for hf, outer, inner, kind in _modules(tower.spec.num_layers):
        module = params.setdefault(outer, {})
        if inner is not None:
            module = module.setdefault(inner, {})
        for param in _PARTS[kind]:
            value = np.asarray(state[tower.names[(hf, param)]], dtype=np.float32)
            module[param] = value.T.copy() if param == "kernel" else value
    return params


def state_from_params(tower: Tower, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """The encoder's tensors under their Hugging Face names and layout (the inverse)."""
    state = {}
    for hf, outer, inner, kind in _modules(tower.spec.num_layers):
        module = params[outer] if inner is None else params[outer][inner]
        for param in _PARTS[kind]:
            value = np.array(module[param], dtype=np.float32)  # a writable copy
            state[tower.names[(hf, param)]] = (
                np.ascontiguousarray(value.T) if param == "kernel" else value
            )
    return state


def write_tower(tower: Tower, params: dict[str, Any], folder: str | Path) -> None:
    """Write ``params`` (same tree as ``tower.params``) as a Hugging Face folder in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {**tower.extras, **state_from_params(tower, params)}
    tensors = {name: torch.from_numpy(np.array(value)) for name, value in state.items()}
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(tower.config, indent=2) + "\n", "utf-8")


def projection_params(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """An ``nn.Linear`` state dict (``weight`` [out, in], ``bias``) as Flax ``kernel``/``bias``."""
    return {
        "kernel": state["weight"].float().numpy().T.copy(),
        "bias": state["bias"].float().numpy().copy(),
    }


def projection_linear(projection: dict[str, Any]) -> torch.nn.Linear:
    """The torch ``nn.Linear`` holding a Flax projection (what densekit's savers write)."""
    kernel = np.asarray(projection["kernel"], dtype=np.float32)
    linear = torch.nn.Linear(*kernel.shape)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
        linear.bias.copy_(torch.from_numpy(np.asarray(projection["bias"], dtype=np.float32)))
    return linear


def fresh_projection(in_dim: int, out_dim: int, seed: int) -> dict[str, np.ndarray]:
    """A new projection drawn as torch's ``nn.Linear`` draws one (uniform, +-1/sqrt(in))."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(in_dim)
    return {
        "kernel": rng.uniform(-bound, bound, (in_dim, out_dim)).astype(np.float32),
        "bias": rng.uniform(-bound, bound, (out_dim,)).astype(np.float32),
    }
