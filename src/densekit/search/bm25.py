"""BM25 search from Python over a corpus (index built once, or loaded from a saved folder)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from densekit.retrieval.bm25 import BM25Index
from densekit.search.corpus import CorpusStore
from densekit.search.hits import RankingSearcher


class BM25Searcher(RankingSearcher):
    """bm25s over ``title text`` (Pyserini's k1=0.9, b=0.4); rankings are ``densekit bm25``'s."""

    def __init__(self, index: BM25Index, corpus: CorpusStore | None = None) -> None:
        self.index, self.corpus = index, corpus

    @classmethod
    def from_corpus(
        cls, corpus: CorpusStore | str | os.PathLike, k1: float = 0.9, b: float = 0.4
    ) -> BM25Searcher:
        """Index a corpus file (or an open :class:`CorpusStore`) in memory."""
        store = corpus if isinstance(corpus, CorpusStore) else CorpusStore.open(corpus)
        return cls(BM25Index.build(store.table, k1, b), store)

    @classmethod
    def from_index(
        cls, folder: str | os.PathLike, corpus: CorpusStore | str | None = None
    ) -> BM25Searcher:
        """A BM25 index saved by :meth:`BM25Index.save` (the recipe's ``searcher/bm25``)."""
        store = CorpusStore.open(corpus) if isinstance(corpus, str | os.PathLike) else corpus
        return cls(BM25Index.load(folder), store)

    def batch_rank(
        self, queries: Sequence[str], ids: Sequence[str], depth: int
    ) -> dict[str, dict[str, float]]:
        return dict(zip(ids, self.index.search(list(queries), depth), strict=True))
