"""What every folder kind reads a model folder into, and what the kinds share.

A kind only says what the folder holds (settings, backbone folders, projection weights, adapter
base); ``modeling.config.resolve_config`` merges the flags over it, and the torch and JAX
encoders build themselves from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from densekit.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"
TOWERS = ("query_model", "passage_model")


@dataclass(frozen=True)
class ModelFolder:
    """A model folder (or hub name) as read, before any flag is applied.

    ``settings`` are ``EncoderConfig`` values the folder carries (flags given override them);
    ``pinned`` are values its weights dictate (they override flags: a Tevatron v1 pooler's
    sizes, untied towers). ``towers`` is one backbone, or the query and passage backbones.
    ``projection`` loads the projection's ``nn.Linear`` state when the folder holds one.
    """

    path: str
    kind: str
    towers: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    pinned: Mapping[str, Any] = field(default_factory=dict)
    projection: Callable[[], dict[str, torch.Tensor]] | None = field(default=None, compare=False)
    adapter_base: str | None = None

    @property
    def untied(self) -> bool:
        return len(self.towers) == 2

    @property
    def tokenizer_path(self) -> str:
        """Where the tokenizer lives: the folder, or an adapter's base when it has none."""
        return tokenizer_source(self.path)


class FolderKind(Protocol):
    """One kind of model folder: whether it reads a folder, and reading it.

    ``looks_for`` names what it recognises a folder by (for the error on an unreadable one).
    """

    name: str
    looks_for: str

    def matches(self, path: str) -> bool: ...

    def read(self, path: str) -> ModelFolder: ...


def adapter_base(path: str | Path) -> str | None:
    """The base model of a peft adapter folder (``adapter_config.json``), else None."""
    config = Path(path) / ADAPTER_CONFIG
    if not config.is_file():
        return None
    try:
        return str(json.loads(config.read_text(encoding="utf-8"))["base_model_name_or_path"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{config}: no readable base_model_name_or_path ({exc})") from None


def tokenizer_source(path: str | Path) -> str:
    """The folder (or hub name) with the tokenizer: an adapter folder without one uses its base."""
    folder = Path(path)
    if (folder / ADAPTER_CONFIG).is_file() and not (folder / "tokenizer_config.json").is_file():
        return adapter_base(folder) or str(path)
    return str(path)


def untied_towers(path: str | Path) -> bool:
    """Whether ``path`` holds separately saved query and passage backbones."""
    return all((Path(path) / tower).is_dir() for tower in TOWERS)


def local_folder(
    path: str,
    kind: str,
    settings: Mapping[str, Any] | None = None,
    pinned: Mapping[str, Any] | None = None,
    projection: Callable[[], dict[str, torch.Tensor]] | None = None,
) -> ModelFolder:
    """A local folder's reading, with what every kind finds alike: towers and adapter base."""
    pinned = dict(pinned or {})
    towers: tuple[str, ...] = (path,)
    if untied_towers(path):
        towers = tuple(str(Path(path) / tower) for tower in TOWERS)
        pinned["untie_encoder"] = True
    return ModelFolder(
        path=path,
        kind=kind,
        towers=towers,
        settings=dict(settings or {}),
        pinned=pinned,
        projection=projection,
        adapter_base=adapter_base(path),
    )
