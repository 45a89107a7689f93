"""Model -> run in one call: encode a corpus and queries, search them exactly.

Shared by the recipe and checkpoint evaluation; the command-line path is the same steps through
files (``densekit encode`` then ``densekit search``).
"""

from __future__ import annotations

import datasets

from densekit.data.train_dataset import format_passage
from densekit.encode import encode_texts
from densekit.modeling.encoder import DenseEncoder
from densekit.retrieval.index import build_index
from densekit.retrieval.search import search_index


def dense_run(
    encoder: DenseEncoder,
    tokenizer,
    corpus: datasets.Dataset,
    queries: datasets.Dataset,
    depth: int,
    bf16: bool,
) -> dict[str, list[tuple[str, float]]]:
    """Encode ``corpus`` and ``queries`` with ``encoder`` and search them exactly (FAISS Flat)."""
    settings = encoder.settings
    passages = [
        format_passage(t, x, " ", settings.passage_prefix)
        for t, x in zip(corpus["title"], corpus["text"], strict=True)
    ]
    doc_vectors = encode_texts(encoder, tokenizer, passages, is_query=False, bf16=bf16)
    query_texts = [settings.query_prefix + t for t in queries["text"]]
    query_vectors = encode_texts(encoder, tokenizer, query_texts, is_query=True, bf16=bf16)
    index = build_index(doc_vectors)
    return search_index(
        list(queries["query_id"]), query_vectors, index, list(corpus["docid"]), depth
    )
