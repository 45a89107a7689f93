"""One reader of model folders for the torch and JAX encoders: a registry of folder kinds.

Each kind says whether it reads a folder (``matches``) and reads it into a :class:`ModelFolder`
(settings, backbone folders, projection weights, adapter base). The first kind that matches
reads the folder, so the order goes from the most specific marker to the most common one (a
later kind's marker may also sit in an earlier kind's folder):

1. ``densekit`` — ``densekit_config.json`` (densekit also writes ST files and may save adapters)
2. ``tevatron-v1`` — ``pooler.pt`` + ``pooler_config.json`` (ST files beside it add lengths)
3. ``sentence-transformers`` — ``modules.json`` (ST 3 to 6; ST can save adapters too)
4. ``lora-adapter`` — ``adapter_config.json`` alone (Tevatron v2 ``--lora`` output)
5. ``hugging-face`` — ``config.json`` (Tevatron v2, any HF model), or a hub name

Adding a kind is one class with ``name``, ``looks_for``, ``matches`` and ``read`` plus one
line in ``KINDS`` (or :func:`register`). Flags are merged over a reading in one place:
``modeling.config.resolve_config``.
"""

from __future__ import annotations

from pathlib import Path

from densekit.errors import ConfigError
from densekit.modeling.folders.base import (
    ADAPTER_CONFIG,
    FolderKind,
    ModelFolder,
    adapter_base,
    tokenizer_source,
)
from densekit.modeling.folders.densekit import CONFIG_NAME, POOLER_FILE, DensekitFolder
from densekit.modeling.folders.hugging_face import HuggingFaceFolder
from densekit.modeling.folders.lora import LoraAdapterFolder
from densekit.modeling.folders.sentence_transformers import SentenceTransformersFolder
from densekit.modeling.folders.tevatron_v1 import TevatronV1Folder
from densekit.resources import looks_local

KINDS: list[FolderKind] = [
    DensekitFolder(),
    TevatronV1Folder(),
    SentenceTransformersFolder(),
    LoraAdapterFolder(),
    HuggingFaceFolder(),
]


def register(kind: FolderKind, before: str = "hugging-face") -> None:
    """Add ``kind`` ahead of the kind named ``before`` (by default: ahead of the catch-all)."""
    names = [k.name for k in KINDS]
    KINDS.insert(names.index(before) if before in names else len(KINDS), kind)


def read_folder(path: str | Path) -> ModelFolder:
    """Read a model folder (or hub name) with the first kind that matches it."""
    text = str(path)
    if looks_local(text) and not Path(text).exists():
        raise ConfigError(f"model folder {text} does not exist")
    for kind in KINDS:
        if kind.matches(text):
            return kind.read(text)
    wanted = [kind.looks_for for kind in KINDS]
    listed = ", ".join(wanted[:-1]) + f" or {wanted[-1]}" if len(wanted) > 1 else wanted[0]
    raise ConfigError(f"{text} is not a model folder: no {listed}")


__all__ = [
    "ADAPTER_CONFIG",
    "CONFIG_NAME",
    "KINDS",
    "POOLER_FILE",
    "FolderKind",
    "ModelFolder",
    "adapter_base",
    "read_folder",
    "register",
    "tokenizer_source",
]
