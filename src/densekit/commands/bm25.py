"""``densekit bm25``: write a BM25 run (bm25s, Pyserini's k1/b) for a corpus and queries."""

from __future__ import annotations

import argparse
import sys

from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.data.runs import FORMATS
from densekit.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("densekit bm25", __doc__)
    parser.add_argument("--corpus", required=True, help="corpus file or folder (jsonl or tsv)")
    parser.add_argument("--queries", required=True, help="queries file (jsonl or tsv)")
    parser.add_argument("--qrels", help="only search the queries judged in this qrels file")
    parser.add_argument("--depth", type=int, default=100, help="documents kept per query")
    parser.add_argument("--save_ranking_to", required=True, help="run file to write")
    parser.add_argument("--k1", type=float, default=0.9, help="BM25 term-frequency saturation")
    parser.add_argument("--b", type=float, default=0.4, help="BM25 length normalisation")
    parser.add_argument(
        "--ranking_format", choices=FORMATS, default="trec", help="layout of the run file"
    )
    parser.add_argument("--run_tag", default="bm25", help="tag in the run's last column")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.depth < 1:
        raise ConfigError(f"--depth must be positive, got {args.depth}")
    from densekit.atomic import check_target
    from densekit.data.qrels import keep_judged, load_qrels
    from densekit.data.readers import load_corpus, load_queries
    from densekit.data.runs import write_run
    from densekit.retrieval.bm25 import bm25_run

    check_target(args.save_ranking_to, folder=False)
    corpus = load_corpus(args.corpus)
    queries = load_queries(args.queries)
    if args.qrels:
        queries = keep_judged(queries, load_qrels(args.qrels), args.qrels)
    run = bm25_run(corpus, queries, args.depth, k1=args.k1, b=args.b)
    write_run(args.save_ranking_to, run, tag=args.run_tag, fmt=args.ranking_format)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
