"""``densekit mine``: hard negatives from a run and qrels into a Tevatron-layout training file."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from densekit.atomic import atomic_open, check_target
from densekit.commands import run_guarded
from densekit.data.qrels import load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.data.runs import read_run
from densekit.errors import DataError
from densekit.retrieval.mine import SAMPLES, mine_negatives, write_training_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="densekit mine",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--run", required=True, help="TREC or MS MARCO run file")
    parser.add_argument("--qrels", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--output", required=True, help="training jsonl to write")
    parser.add_argument("--range_min", type=int, default=0, help="first rank used (0-based)")
    parser.add_argument("--range_max", type=int, default=100, help="rank after the last used")
    parser.add_argument("--negative_number", type=int, default=30)
    parser.add_argument(
        "--perc_pos",
        type=float,
        default=0.95,
        help="drop candidates scoring above this fraction of the positive's score; 0 disables",
    )
    parser.add_argument("--sample", choices=SAMPLES, default="top")
    parser.add_argument("--seed", type=int, default=42)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_target(args.output, folder=False)
    qrels = load_qrels(args.qrels)
    run = read_run(args.run)
    if not any(qid in qrels for qid in run):
        raise DataError(args.run, f"no query of the run is judged in {args.qrels}")
    negatives, report = mine_negatives(
        run,
        qrels,
        range_min=args.range_min,
        range_max=args.range_max,
        negative_number=args.negative_number,
        perc_pos=args.perc_pos if args.perc_pos > 0 else None,
        seed=args.seed,
        sample=args.sample,
    )
    write_training_file(
        args.output,
        negatives,
        qrels,
        load_queries(args.queries),
        load_corpus(args.corpus),
        sources=(args.qrels, args.run, args.corpus, args.queries),
    )
    with atomic_open(f"{args.output}.report.json", "w", encoding="utf-8") as handle:
        json.dump(asdict(report), handle, indent=2)
        handle.write("\n")
    for line in report.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
