"""Model -> run in one call: encode a corpus and queries, search them exactly.

Shared by the recipe and checkpoint evaluation; the command-line path is the same steps through
files (``densekit encode`` then ``densekit search``). Texts are formatted by the encoder's own
config, so a model is evaluated on the text it was trained on.
"""

from __future__ import annotations

import datasets

from densekit.data.runs import Run
from densekit.inference.encode import encode_texts, passage_texts, query_texts
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
) -> Run:
    """Encode ``corpus`` and ``queries`` with ``encoder`` and search them exactly (FAISS Flat)."""
    doc_vectors = encode_texts(
        encoder, tokenizer, passage_texts(encoder, corpus), is_query=False, bf16=bf16
    )
    query_vectors = encode_texts(
        encoder, tokenizer, query_texts(encoder, queries), is_query=True, bf16=bf16
    )
    index = build_index(doc_vectors)
    return search_index(
        list(queries["query_id"]), query_vectors, index, list(corpus["docid"]), depth
    )
