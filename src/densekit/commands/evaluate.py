"""``densekit evaluate``: score a run file against qrels with trec_eval semantics."""

from __future__ import annotations

import argparse
import json
import sys

from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.errors import DataError

DEFAULT_METRICS = "ndcg@10,mrr@10,recall@100,map@100,p@10,success@10"


def build_parser() -> argparse.ArgumentParser:
    """Describe the flags; kept separate so the dispatcher can show help."""
    parser = new_parser(
        "densekit evaluate", "Evaluate a TREC or MS MARCO run against BEIR or TREC qrels."
    )
    parser.add_argument("--run", required=True, help="run file (TREC 6 columns or MS MARCO 3)")
    parser.add_argument("--qrels", required=True, help="qrels file (BEIR tsv or TREC)")
    parser.add_argument(
        "--metrics",
        default=DEFAULT_METRICS,
        help=f"comma-separated NAME@K list (default: {DEFAULT_METRICS})",
    )
    parser.add_argument(
        "--relevance_threshold",
        type=int,
        default=1,
        help="lowest relevance counted as relevant by binary metrics (default: 1)",
    )
    parser.add_argument("--output", help="write mean and per-query values to this JSON file")
    parser.add_argument("--per_query", action="store_true", help="also print per-query values")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; DensekitError subclasses propagate to the dispatcher."""
    args = build_parser().parse_args(argv)
    from densekit.atomic import atomic_open, check_target
    from densekit.data.qrels import load_qrels
    from densekit.data.runs import read_run
    from densekit.evaluation.metrics import evaluate, format_table, parse_metrics

    metrics = parse_metrics(args.metrics)
    if args.output:
        check_target(args.output, folder=False)
    run = read_run(args.run)
    qrels = load_qrels(args.qrels)
    if not any(qid in qrels for qid in run):
        raise DataError(args.run, f"no query of the run is in the qrels {args.qrels}")
    per_query, mean = evaluate(run, qrels, metrics, args.relevance_threshold)

    if args.per_query:
        print("\t".join(["query", *metrics]))
        for qid, values in per_query.items():
            print("\t".join([qid, *(f"{values[name]:.4f}" for name in metrics)]))
        print()
    print(format_table({m: {"value": v} for m, v in mean.items()}, ["value"], label="metric"))
    if args.output:
        with atomic_open(args.output, "w", encoding="utf-8") as handle:
            json.dump({"mean": mean, "per_query": per_query}, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
