"""BM25 with ``bm25s``: a lexical reference point, a source of hard negatives, a searcher.

Defaults (k1=0.9, b=0.4) are Pyserini's, so numbers are comparable with the BEIR BM25 tables.
:class:`BM25Index` is built once over a corpus and can be saved and loaded (a searcher reuses
it); :func:`bm25_run` is one index searched with a set of queries.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import bm25s
import datasets
import numpy as np
import Stemmer

from densekit.atomic import WRITER, atomic_path
from densekit.data.runs import Run
from densekit.errors import ConfigError, DataError
from densekit.retrieval.embeddings import read_ids, write_ids

logger = logging.getLogger(__name__)
_PARALLEL_QUERIES = 256
_TIE_MARGIN = 8
_META = "densekit_bm25.json"
_IDS = "ids.txt"


def _stemmer() -> Stemmer.Stemmer:
    """English Snowball stemming, as Pyserini's default analyzer (Porter) stems too."""
    return Stemmer.Stemmer("english")


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class BM25Index:
    """A bm25s index over a corpus's ``title text``, with the corpus's docids."""

    def __init__(self, retriever: bm25s.BM25, doc_ids: list[str], stopwords: str | None) -> None:
        self.retriever, self.doc_ids, self.stopwords = retriever, doc_ids, stopwords
        self.stemmer = _stemmer()

    @classmethod
    def build(
        cls, corpus: datasets.Dataset, k1: float = 0.9, b: float = 0.4, stopwords: str | None = "en"
    ) -> BM25Index:
        """Tokenize (stemmed, stopwords dropped) and index every passage of ``corpus``."""
        texts = [
            f"{title} {text}".strip()
            for title, text in zip(corpus["title"], corpus["text"], strict=True)
        ]
        retriever = bm25s.BM25(k1=k1, b=b)
        tokens = bm25s.tokenize(texts, stopwords=stopwords, stemmer=_stemmer(), show_progress=False)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, list(corpus["docid"]), stopwords)

    def save(self, folder: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the index, its docids and settings; the folder appears only when complete."""
        with atomic_path(folder, folder=True, overwrite=overwrite) as tmp:
            tmp.mkdir()
            self.retriever.save(str(tmp), show_progress=False)
            write_ids(tmp / _IDS, self.doc_ids)
            meta = {"writer": WRITER, "kind": "bm25", "stopwords": self.stopwords}
            (tmp / _META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> BM25Index:
        """An index :meth:`save` wrote."""
        path = Path(folder)
        try:
            meta = json.loads((path / _META).read_text(encoding="utf-8"))
            retriever = bm25s.BM25.load(str(path), show_progress=False)
        except (OSError, ValueError) as exc:
            raise DataError(str(path), f"not a densekit BM25 index ({exc})") from None
        ids = read_ids(path / _IDS)
        return cls(retriever, ids, meta.get("stopwords"))

    def search(self, texts: Sequence[str], depth: int) -> list[dict[str, float]]:
        """Top-``depth`` hits per query text, best first (equal scores by docid); documents
        sharing no term with the query (score 0) are left out."""
        if depth < 1:
            raise ConfigError(f"depth must be positive, got {depth}")
        if not texts:
            return []
        # Strings, not ids: a second tokenize call would number tokens in a vocabulary of its own.
        query_tokens = bm25s.tokenize(
            list(texts),
            stopwords=self.stopwords,
            stemmer=self.stemmer,
            return_ids=False,
            show_progress=False,
        )
        if not isinstance(query_tokens, list):
            query_tokens = list(query_tokens)
        # Documents tied at the cut-off are chosen by docid, not by bm25s's partition order, so
        # any depth gives a prefix of one ranking: a query whose deepest candidate still ties
        # the cut-off is asked again with twice as many.
        rankings: list[dict[str, float] | None] = [None] * len(query_tokens)
        pending, k = list(range(len(query_tokens))), depth + _TIE_MARGIN
        while pending:
            k = min(k, len(self.doc_ids))
            tokens = [query_tokens[i] for i in pending]
            threads = _cpu_count() if len(tokens) >= _PARALLEL_QUERIES else 0
            rows, scores = self.retriever.retrieve(
                tokens, k=k, n_threads=threads, show_progress=False
            )
            again = []
            for i, query_rows, query_scores in zip(pending, rows, scores, strict=True):
                ordered = np.sort(query_scores)[::-1]
                tied = depth < k and ordered[-1] > 0 and ordered[-1] == ordered[depth - 1]
                if tied and k < len(self.doc_ids):
                    again.append(i)
                else:
                    rankings[i] = self._hits(query_rows, query_scores, depth)
            pending, k = again, k * 2
        return rankings

    def _hits(self, rows: np.ndarray, scores: np.ndarray, depth: int) -> dict[str, float]:
        hits = [
            (self.doc_ids[row], float(score))
            for row, score in zip(rows.tolist(), scores.tolist(), strict=True)
            if score > 0
        ]
        return dict(sorted(hits, key=lambda hit: (-hit[1], hit[0]))[:depth])


def bm25_run(
    corpus: datasets.Dataset,
    queries: datasets.Dataset,
    depth: int,
    k1: float = 0.9,
    b: float = 0.4,
    stopwords: str | None = "en",
) -> Run:
    """Top-``depth`` BM25 documents per query; documents sharing no term (score 0) are left out."""
    if depth < 1:
        raise ConfigError(f"depth must be positive, got {depth}")
    if len(queries) == 0:
        return {}
    index = BM25Index.build(corpus, k1, b, stopwords)
    hits = index.search(list(queries["text"]), depth)
    return dict(zip(queries["query_id"], hits, strict=True))
