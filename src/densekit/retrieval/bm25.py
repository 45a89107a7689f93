"""BM25 baseline runs with ``bm25s``: a lexical reference point and a source of hard negatives.

Defaults (k1=0.9, b=0.4) are Pyserini's, so numbers are comparable with the BEIR BM25 tables.
"""

from __future__ import annotations

import argparse
import logging
import os

import bm25s
import datasets
import Stemmer

from densekit.data.qrels import load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.errors import ConfigError, DataError
from densekit.retrieval.trec import FORMATS, write_run

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
) -> dict[str, list[tuple[str, float]]]:
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
    run: dict[str, list[tuple[str, float]]] = {}
    for qid, query_rows, query_scores in zip(queries["query_id"], rows, scores, strict=True):
        hits = [
            (doc_ids[row], float(score))
            for row, score in zip(query_rows.tolist(), query_scores.tolist(), strict=True)
            if score > 0
        ]
        run[qid] = sorted(hits, key=lambda hit: (-hit[1], hit[0]))
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densekit bm25", description="Write a BM25 run file.")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--qrels", help="only search the queries judged in this qrels file")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--save_ranking_to", required=True)
    parser.add_argument("--k1", type=float, default=0.9)
    parser.add_argument("--b", type=float, default=0.4)
    parser.add_argument("--ranking_format", choices=FORMATS, default="trec")
    parser.add_argument("--run_tag", default="bm25")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    corpus = load_corpus(args.corpus)
    if len(corpus) == 0:
        raise DataError(args.corpus, "the corpus is empty")
    queries = load_queries(args.queries)
    if args.qrels:
        judged = set(load_qrels(args.qrels))
        queries = queries.filter(lambda qid: qid in judged, input_columns="query_id")
        if len(queries) == 0:
            raise DataError(args.qrels, f"no query id in common with {args.queries}")
    run = bm25_run(corpus, queries, args.depth, k1=args.k1, b=args.b)
    write_run(args.save_ranking_to, run, tag=args.run_tag, fmt=args.ranking_format)
    return 0
