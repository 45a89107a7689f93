"""BM25 baseline runs with ``bm25s``: a lexical reference point and a source of hard negatives.

Defaults (k1=0.9, b=0.4) are Pyserini's, so numbers are comparable with the BEIR BM25 tables.
"""

from __future__ import annotations

import logging
import os

import bm25s
import datasets
import Stemmer

from densekit.data.runs import Run
from densekit.errors import ConfigError

logger = logging.getLogger(__name__)
_PARALLEL_QUERIES = 256


def _stemmer() -> Stemmer.Stemmer:
    """English Snowball stemming, as Pyserini's default analyzer (Porter) stems too."""
    return Stemmer.Stemmer("english")


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
    stemmer = _stemmer()
    doc_ids = list(corpus["docid"])
    texts = [
        f"{title} {text}".strip()
        for title, text in zip(corpus["title"], corpus["text"], strict=True)
    ]
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(bm25s.tokenize(texts, stopwords=stopwords, stemmer=stemmer))
    # Strings, not ids: a second tokenize call would number tokens in a vocabulary of its own.
    query_tokens = bm25s.tokenize(
        list(queries["text"]), stopwords=stopwords, stemmer=stemmer, return_ids=False
    )
    k = min(depth, len(doc_ids))
    threads = _cpu_count() if len(query_tokens) >= _PARALLEL_QUERIES else 0
    rows, scores = retriever.retrieve(query_tokens, k=k, n_threads=threads)
    run: Run = {}
    for qid, query_rows, query_scores in zip(queries["query_id"], rows, scores, strict=True):
        hits = [
            (doc_ids[row], float(score))
            for row, score in zip(query_rows.tolist(), query_scores.tolist(), strict=True)
            if score > 0
        ]
        run[qid] = dict(sorted(hits, key=lambda hit: (-hit[1], hit[0])))
    return run
