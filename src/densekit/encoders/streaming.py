"""Tables of texts through a :class:`TextEncoder`, a window of rows at a time.

The corpus is read from its memory-mapped Arrow table one window at a time and each window is
encoded by one encoder call (which sorts it by length into batches), so encoding a corpus holds
one window of texts and vectors, whatever the corpus size and whatever the backend.
"""

from __future__ import annotations

from collections.abc import Iterator

import datasets
import numpy as np
from tqdm.auto import tqdm

from densekit.encoders.interface import TextEncoder
from densekit.inference.encode import WINDOW_BATCHES, release_mapped_pages


def stream_table(
    encoder: TextEncoder,
    table: datasets.Dataset,
    is_query: bool,
    batch_size: int = 64,
    progress: bool = True,
) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(ids, vectors)`` per window of ``table`` rows, in table order, through ``encoder``.

    Only the needed columns of one window are read from the memory-mapped Arrow data at a time.
    """
    id_column = "query_id" if is_query else "docid"
    columns = [id_column, "text"] if is_query else [id_column, "title", "text"]
    files = {entry["filename"] for entry in table.cache_files}
    release_mapped_pages(files)
    window = WINDOW_BATCHES * batch_size
    bar = tqdm(
        desc="queries" if is_query else "passages",
        unit="text",
        total=len(table),
        disable=not progress,
    )
    with bar:
        for part in table.select_columns(columns).iter(batch_size=window):
            release_mapped_pages(files)
            if is_query:
                vectors = encoder.encode_queries(part["text"], batch_size=batch_size)
            else:
                vectors = encoder.encode_passages(part["text"], part["title"], batch_size)
            bar.update(len(part[id_column]))
            yield part[id_column], vectors


def encode_all(
    encoder: TextEncoder,
    table: datasets.Dataset,
    is_query: bool,
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[list[str], np.ndarray]:
    """All ids and vectors of a table that fits in memory (queries, evaluation corpora)."""
    ids: list[str] = []
    parts: list[np.ndarray] = []
    for window_ids, vectors in stream_table(encoder, table, is_query, batch_size, progress):
        ids.extend(window_ids)
        parts.append(vectors)
    if not parts:
        return ids, np.zeros((0, 0), dtype=np.float32)
    return ids, np.concatenate(parts)
