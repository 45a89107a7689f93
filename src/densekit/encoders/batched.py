"""A :class:`~densekit.encoders.interface.TextEncoder` over a batch-level encoder.

The torch ``DenseEncoder``, the ONNX/OpenVINO runners and the Flax encoder all take one
tokenized batch (``encode(batch, is_query)``); this adapter formats the texts as the model
expects, tokenizes them, sorts them by length so batches pad little, and returns the vectors
in the given order. Every backend shares it, so every backend truncates and batches alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from densekit.inference.encode import encode_texts


class BatchedTextEncoder:
    """Texts in, vectors out, through ``model.encode(batch, is_query)`` and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, backend: str, bf16: bool = False) -> None:
        self.model, self.tokenizer, self.backend, self.bf16 = model, tokenizer, backend, bf16
        self.settings = model.settings
        self.precision = "bf16" if bf16 else "fp32"
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """The vector size (found by encoding one short text the first time it is asked)."""
        if self._dim is None:
            self._dim = int(self.encode_queries(["dimension probe"]).shape[1])
        return self._dim

    def _encode(self, texts: list[str], is_query: bool, batch_size: int) -> np.ndarray:
        vectors = encode_texts(
            self.model, self.tokenizer, texts, is_query, batch_size, bf16=self.bf16, progress=False
        )
        if len(texts) == 0 and self._dim is not None:
            return np.zeros((0, self._dim), dtype=np.float32)
        if len(texts):
            self._dim = int(vectors.shape[1])
        return vectors

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Query vectors: each text gets the model's query prefix or prompt first."""
        fmt = getattr(self.model, "format_query", self.settings.format_query)
        return self._encode([fmt(text) for text in texts], True, batch_size)

    def encode_passages(
        self,
        texts: Sequence[str],
        titles: Sequence[str | None] | None = None,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Passage vectors: title and text joined as the model was trained to read them."""
        titles = titles if titles is not None else [None] * len(texts)
        fmt = getattr(self.model, "format_passage", self.settings.format_passage)
        formatted = [fmt(text, title) for title, text in zip(titles, texts, strict=True)]
        return self._encode(formatted, False, batch_size)
