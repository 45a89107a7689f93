"""densekit's own folder: ``densekit_config.json`` holds every setting.

Its sentence-transformers files are written for ST and not read back; the projection is
``pooler.safetensors``.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from safetensors.torch import load_file

from densekit.errors import ConfigError
from densekit.modeling.folders.base import ModelFolder, local_folder

CONFIG_NAME = "densekit_config.json"
POOLER_FILE = "pooler.safetensors"


class DensekitFolder:
    """A folder densekit saved (training output, ``convert``, ``merge-lora``)."""

    name = "densekit"
    looks_for = CONFIG_NAME

    def matches(self, path: str) -> bool:
        return (Path(path) / CONFIG_NAME).is_file()

    def read(self, path: str) -> ModelFolder:
        config = Path(path) / CONFIG_NAME
        try:
            settings = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{config}: not readable JSON ({exc})") from None
        pooler = Path(path) / POOLER_FILE
        projection = partial(load_file, str(pooler)) if pooler.is_file() else None
        return local_folder(path, self.name, settings, projection=projection)
