"""The encoder interface (a typed Protocol) and the settings that choose and load an encoder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from densekit.modeling.config import EncoderConfig


@runtime_checkable
class TextEncoder(Protocol):
    """Raw texts -> float32 vectors ``[len(texts), dim]``, in the order given.

    ``settings`` are what shape the vectors (pooling, normalisation, prefixes, max lengths);
    ``backend`` names the registry entry that built the encoder.
    """

    backend: str
    settings: EncoderConfig

    @property
    def dim(self) -> int: ...

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...

    def encode_passages(
        self,
        texts: Sequence[str],
        titles: Sequence[str | None] | None = None,
        batch_size: int = 64,
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class Calibration:
    """Raw texts to calibrate int8 weights on (a sample of what will be encoded)."""

    texts: Sequence[str]
    titles: Sequence[str | None] | None = None
    is_query: bool = False

    def formatted(self, model: Any) -> list[str]:
        """The texts as ``model`` formats them (its prefixes, title separator)."""
        if self.is_query:
            return [model.format_query(text) for text in self.texts]
        titles = self.titles if self.titles is not None else [None] * len(self.texts)
        return [
            model.format_passage(text, title)
            for title, text in zip(titles, self.texts, strict=True)
        ]


@dataclass
class EncoderSpec:
    """Which model to load, on which backend, and the settings given over the folder's.

    ``overrides`` holds :class:`EncoderConfig` fields (``None`` or absent = the folder's value)
    plus ``lora_name_or_path``. ``calibration`` is a sample of texts for backends that calibrate
    int8 weights on data (OpenVINO); the others ignore it.
    """

    model: str
    backend: str = "torch"
    quantize: str | None = None
    export_dir: str | None = None
    device: str | None = None
    precision: str = "auto"
    tokenizer: str | None = None
    threads: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None

    def settings_overrides(self) -> dict[str, Any]:
        """The overrides that are :class:`EncoderConfig` fields (given ones only)."""
        return {k: v for k, v in self.overrides.items() if k != "lora_name_or_path"}
