"""Texts -> vectors with a ``DenseEncoder``: length-sorted batches under inference mode.

Texts are sorted by length so each batch pads little, and run under ``torch.inference_mode``
(bf16 autocast on request). The ``encode`` command, ``dense_run`` and checkpoint evaluation all
encode through :func:`encode_texts`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from densekit.errors import ConfigError
from densekit.modeling.encoder import DenseEncoder


def _length_sorted_batches(
    tokenizer, texts: list[str], order: np.ndarray, max_len: int, append_eos: bool, batch_size: int
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Padded batches of ``texts`` (rows given by ``order``) sorted by token count.

    Texts come pre-sorted by characters; each window of 64 batches is tokenized once and
    re-sorted by tokens, which removes most of the padding left by the character sort while
    holding only one window of token ids in memory.
    """
    window = batch_size * 64
    for start in range(0, len(order), window):
        rows = order[start : start + window]
        ids = tokenizer(
            [texts[i] for i in rows],
            max_length=max_len - 1 if append_eos else max_len,
            truncation=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        if append_eos:
            ids = [[*row, tokenizer.eos_token_id] for row in ids]
        by_length = np.argsort([-len(row) for row in ids], kind="stable")
        for first in range(0, len(rows), batch_size):
            chosen = by_length[first : first + batch_size]
            batch = tokenizer.pad(
                {"input_ids": [ids[i] for i in chosen]},
                return_attention_mask=True,
                return_tensors="pt",
            )
            yield rows[chosen], dict(batch)


def passage_texts(encoder: DenseEncoder, corpus: datasets.Dataset) -> list[str]:
    """The corpus as the encoder formats passages (prefix, title, separator)."""
    return [
        encoder.format_passage(text, title)
        for title, text in zip(corpus["title"], corpus["text"], strict=True)
    ]


def query_texts(encoder: DenseEncoder, queries: datasets.Dataset) -> list[str]:
    """The queries as the encoder formats them (prefix)."""
    return [encoder.format_query(text) for text in queries["text"]]


def encode_texts(
    encoder: DenseEncoder,
    tokenizer,
    texts: list[str],
    is_query: bool,
    batch_size: int = 64,
    max_len: int | None = None,
    bf16: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """Vectors for ``texts`` in their given order (float32), batched by length, longest first."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    settings = encoder.settings
    max_len = max_len or (settings.query_max_len if is_query else settings.passage_max_len)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    device = next(encoder.parameters()).device
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    out: np.ndarray | None = None
    encoder.eval()
    batches = _length_sorted_batches(
        tokenizer, texts, order, max_len, settings.append_eos_token, batch_size
    )
    total = -(-len(texts) // batch_size)
    desc = "queries" if is_query else "passages"
    with torch.inference_mode(), autocast:
        for rows, batch in tqdm(
            batches, desc=desc, unit="batch", total=total, disable=not progress
        ):
            reps = encoder.encode({k: v.to(device) for k, v in batch.items()}, is_query=is_query)
            reps = reps.float().cpu().numpy()
            if out is None:
                out = np.empty((len(texts), reps.shape[1]), dtype=np.float32)
            out[rows] = reps
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    return out


def truncate(vectors: np.ndarray, dim: int, normalize: bool) -> np.ndarray:
    """The first ``dim`` dimensions (Matryoshka), renormalized when the model normalizes."""
    if dim > vectors.shape[1]:
        raise ConfigError(f"--truncate_dim {dim} exceeds the vector size {vectors.shape[1]}")
    cut = np.ascontiguousarray(vectors[:, :dim])
    if normalize:
        cut /= np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
    return cut
