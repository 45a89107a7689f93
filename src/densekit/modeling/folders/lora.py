"""A bare peft adapter folder (``adapter_config.json``), e.g. Tevatron v2's ``--lora`` output.

It carries no encoder settings; the backbone is its base model with the adapter on top.
"""

from __future__ import annotations

from pathlib import Path

from densekit.modeling.folders.base import ADAPTER_CONFIG, ModelFolder, local_folder


class LoraAdapterFolder:
    """A LoRA adapter saved without densekit or sentence-transformers files."""

    name = "lora-adapter"
    looks_for = ADAPTER_CONFIG

    def matches(self, path: str) -> bool:
        return (Path(path) / ADAPTER_CONFIG).is_file()

    def read(self, path: str) -> ModelFolder:
        return local_folder(path, self.name)
