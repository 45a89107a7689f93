"""Search from Python, in the shape pyserini's users know.

``DenseSearcher`` (any encoder backend over a FAISS index or an embeddings folder),
``BM25Searcher`` (bm25s over a corpus) and ``HybridSearcher`` (weighted min-max fusion of the
two) share ``search(query, k)`` and ``batch_search(queries, qids, k)``, which return
:class:`Hit` objects with the document's title and text. ``load_searcher(folder)`` opens what
``densekit recipe`` wrote (its hybrid searcher, with the dev-tuned weight, by default).
"""

from densekit.search.bm25 import BM25Searcher
from densekit.search.corpus import CorpusStore
from densekit.search.dense import DenseSearcher
from densekit.search.folder import MODES, Searchers, load_searcher, load_searchers
from densekit.search.hits import Hit, RankingSearcher, Searcher
from densekit.search.hybrid import HybridSearcher
from densekit.search.rerank import RerankingSearcher

__all__ = [
    "MODES",
    "BM25Searcher",
    "CorpusStore",
    "DenseSearcher",
    "Hit",
    "HybridSearcher",
    "RankingSearcher",
    "RerankingSearcher",
    "Searcher",
    "Searchers",
    "load_searcher",
    "load_searchers",
]
