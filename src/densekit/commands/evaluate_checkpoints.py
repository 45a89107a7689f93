"""``densekit evaluate-checkpoints``: score every checkpoint of a run (PaddleNLP --evaluate_all).

Encodes, searches exactly and evaluates each complete ``checkpoint-*`` folder (and the final
model), prints one table and writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from densekit.atomic import atomic_open, check_target
from densekit.commands import run_guarded
from densekit.data.qrels import keep_judged, load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.evaluation.checkpoints import evaluate_checkpoints
from densekit.evaluation.metrics import format_table, parse_metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="densekit evaluate-checkpoints", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--output_dir", "--query_model", required=True, help="training run folder")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--qrels", required=True, help="only these queries are evaluated")
    parser.add_argument("--metrics", default="ndcg@10,mrr@10,recall@100")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument(
        "--save_to", default=None, help="JSON file (default: <run>/checkpoints.json)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    metrics = parse_metrics(args.metrics)
    target = args.save_to or str(Path(args.output_dir) / "checkpoints.json")
    check_target(target, folder=False)
    qrels = load_qrels(args.qrels)
    corpus = load_corpus(args.corpus)
    queries = keep_judged(load_queries(args.queries), qrels, args.qrels)
    rows = evaluate_checkpoints(
        args.output_dir, corpus, queries, qrels, metrics, args.depth, args.bf16
    )
    print(format_table(rows, metrics, label="checkpoint"))
    with atomic_open(target, "w") as handle:
        json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
