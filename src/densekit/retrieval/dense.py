"""Model -> run in one call: encode a corpus and queries, search them exactly.

Shared by the recipe and checkpoint evaluation; the command-line path is the same steps through
files (``densekit encode`` then ``densekit search``). Texts are formatted by the encoder's own
config, so a model is evaluated on the text it was trained on. The corpus is streamed from its
Arrow table window by window into the Flat index, so no list of texts and no second copy of the
vectors is ever held.
"""

from __future__ import annotations

import datasets
import faiss

from densekit.data.runs import Run
from densekit.errors import ConfigError
from densekit.inference.encode import encode_table, encode_table_in_memory
from densekit.retrieval.index import new_index
from densekit.retrieval.search import search_index


def index_corpus(
    encoder, tokenizer, corpus: datasets.Dataset, bf16: bool, batch_size: int = 64
) -> tuple[list[str], faiss.Index]:
    """The corpus ids and a Flat inner-product index filled window by window as it is encoded."""
    ids: list[str] = []
    index: faiss.Index | None = None
    for window_ids, vectors in encode_table(
        encoder, tokenizer, corpus, is_query=False, batch_size=batch_size, bf16=bf16
    ):
        if index is None:
            index = new_index(vectors.shape[1])
        index.add(vectors)
        ids.extend(window_ids)
    if index is None:
        raise ConfigError("the corpus holds no passages: nothing to search")
    return ids, index


def dense_run(
    encoder,
    tokenizer,
    corpus: datasets.Dataset,
    queries: datasets.Dataset,
    depth: int,
    bf16: bool,
) -> Run:
    """Encode ``corpus`` and ``queries`` with ``encoder`` and search them exactly (FAISS Flat)."""
    doc_ids, index = index_corpus(encoder, tokenizer, corpus, bf16)
    query_ids, query_vectors = encode_table_in_memory(
        encoder, tokenizer, queries, is_query=True, bf16=bf16
    )
    return search_index(query_ids, query_vectors, index, doc_ids, depth)
