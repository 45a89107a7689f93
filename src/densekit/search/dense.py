"""Dense search from Python: an encoder backend + a FAISS index (or an embeddings folder)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import faiss
import numpy as np

from densekit.encoders import EncoderSpec, TextEncoder, load_encoder
from densekit.retrieval.embeddings import load_embeddings
from densekit.retrieval.index import build_planned, load_index, set_search_params
from densekit.retrieval.search import check_dims, iter_search_index
from densekit.search.corpus import CorpusStore
from densekit.search.hits import RankingSearcher


class DenseSearcher(RankingSearcher):
    """Queries encoded by any :class:`TextEncoder`, searched in a FAISS index of the corpus.

    Rankings are exactly ``densekit search``'s for the same vectors (equal scores by docid).
    """

    def __init__(
        self,
        encoder: TextEncoder,
        index: faiss.Index,
        doc_ids: Sequence[str],
        corpus: CorpusStore | None = None,
    ) -> None:
        if index.ntotal != len(doc_ids):
            raise ValueError(f"an index of {index.ntotal} vectors with {len(doc_ids)} ids")
        self.encoder, self.index, self.doc_ids, self.corpus = encoder, index, list(doc_ids), corpus

    @classmethod
    def from_index(
        cls,
        encoder: TextEncoder | EncoderSpec | str,
        index_folder: str | os.PathLike,
        corpus: CorpusStore | str | None = None,
        search_params: str | None = None,
    ) -> DenseSearcher:
        """Over a FAISS index saved by ``densekit index`` / ``search --save_index``."""
        index, ids = load_index(index_folder)
        set_search_params(index, search_params)
        return cls(_encoder(encoder), index, ids, _corpus(corpus))

    @classmethod
    def from_embeddings(
        cls,
        encoder: TextEncoder | EncoderSpec | str,
        embeddings: str | os.PathLike,
        corpus: CorpusStore | str | None = None,
        index_preset: str | None = None,
        index_factory: str = "Flat",
    ) -> DenseSearcher:
        """Over an embeddings folder written by ``densekit encode`` (index built in memory)."""
        ids, vectors = load_embeddings(embeddings)
        return cls(
            _encoder(encoder),
            build_planned(vectors, index_preset, index_factory, None),
            ids,
            _corpus(corpus),
        )

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def batch_rank(
        self, queries: Sequence[str], ids: Sequence[str], depth: int
    ) -> dict[str, dict[str, float]]:
        return self.rank_vectors(ids, self.encoder.encode_queries(list(queries)), depth)

    def rank_vectors(
        self, ids: Sequence[str], vectors: np.ndarray, depth: int
    ) -> dict[str, dict[str, float]]:
        """The ranking for query vectors already encoded (the server batches the encoding)."""
        check_dims(self.index.d, vectors, "the index")
        return dict(
            iter_search_index(ids, vectors, self.index, self.doc_ids, depth, progress=False)
        )


def _encoder(encoder: TextEncoder | EncoderSpec | str) -> TextEncoder:
    if isinstance(encoder, str):
        encoder = EncoderSpec(encoder)
    return load_encoder(encoder) if isinstance(encoder, EncoderSpec) else encoder


def _corpus(corpus: CorpusStore | str | None) -> CorpusStore | None:
    return CorpusStore.open(corpus) if isinstance(corpus, str | os.PathLike) else corpus
