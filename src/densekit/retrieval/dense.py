"""Model -> run in one call: encode a corpus and queries, search them exactly.

Shared by the recipe, checkpoint evaluation and mining; the command-line path is the same steps
through files (``densekit encode`` then ``densekit search``). The encoder is any
:class:`~densekit.encoders.TextEncoder` (wrap a model being trained with
:class:`~densekit.encoders.batched.BatchedTextEncoder`), so texts are formatted by the model's
own settings. The corpus is streamed from its Arrow table window by window into the Flat index,
so no list of texts and no second copy of the vectors is ever held.
"""

from __future__ import annotations

import datasets
import faiss

from densekit.data.runs import Run
from densekit.encoders.interface import TextEncoder
from densekit.encoders.streaming import encode_all, stream_table
from densekit.errors import ConfigError
from densekit.retrieval.index import new_index
from densekit.retrieval.search import search_index


def index_corpus(
    encoder: TextEncoder, corpus: datasets.Dataset, batch_size: int = 64, progress: bool = True
) -> tuple[list[str], faiss.Index]:
    """The corpus ids and a Flat inner-product index filled window by window as it is encoded."""
    ids: list[str] = []
    index: faiss.Index | None = None
    for window_ids, vectors in stream_table(encoder, corpus, False, batch_size, progress):
        if index is None:
            index = new_index(vectors.shape[1])
        index.add(vectors)
        ids.extend(window_ids)
    if index is None:
        raise ConfigError("the corpus holds no passages: nothing to search")
    return ids, index


def dense_run(
    encoder: TextEncoder,
    corpus: datasets.Dataset,
    queries: datasets.Dataset,
    depth: int,
    batch_size: int = 64,
    progress: bool = True,
) -> Run:
    """Encode ``corpus`` and ``queries`` with ``encoder`` and search them exactly (FAISS Flat)."""
    doc_ids, index = index_corpus(encoder, corpus, batch_size, progress)
    query_ids, vectors = encode_all(encoder, queries, True, batch_size, progress)
    return search_index(query_ids, vectors, index, doc_ids, depth)
