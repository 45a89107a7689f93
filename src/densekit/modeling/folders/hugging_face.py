"""A plain Hugging Face model (Tevatron v2 saves these): a folder or a hub name.

It carries no encoder settings: densekit's fallbacks apply (cls pooling, no normalization).
"""

from __future__ import annotations

from pathlib import Path

from densekit.modeling.folders.base import TOWERS, ModelFolder, local_folder
from densekit.resources import looks_local

HF_CONFIG = "config.json"


class HuggingFaceFolder:
    """``config.json`` at the top or in both towers' folders, or a hub name (``org/name``)."""

    name = "hugging-face"
    looks_for = HF_CONFIG

    def matches(self, path: str) -> bool:
        folder = Path(path)
        if not folder.exists():
            return not looks_local(path)
        return (folder / HF_CONFIG).is_file() or all(
            (folder / tower / HF_CONFIG).is_file() for tower in TOWERS
        )

    def read(self, path: str) -> ModelFolder:
        if not Path(path).exists():  # a hub name: its files are fetched when the model loads
            return ModelFolder(path=path, kind=self.name, towers=(path,))
        return local_folder(path, self.name)
