"""A sentence-transformers folder (``modules.json``), as versions 3 to 6 write it.

Settings come from its Pooling, Dense, Normalize modules, lengths and prompts (see
``modeling.st_format``); a ``Dense`` module is the projection.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from densekit.modeling import st_format
from densekit.modeling.folders.base import ModelFolder, local_folder


class SentenceTransformersFolder:
    """A folder ``SentenceTransformer(path)`` loads."""

    name = "sentence-transformers"
    looks_for = st_format.MODULES_FILE

    def matches(self, path: str) -> bool:
        return (Path(path) / st_format.MODULES_FILE).is_file()

    def read(self, path: str) -> ModelFolder:
        settings, dense = st_format.read(path)
        projection = None if dense is None else partial(st_format.load_dense, dense)
        return local_folder(path, self.name, settings, projection=projection)
