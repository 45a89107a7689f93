"""``densekit index``: build a FAISS index over passage embeddings and save it for searches."""

from __future__ import annotations

import argparse
import sys

from densekit.atomic import check_target
from densekit.commands import run_guarded
from densekit.retrieval.embeddings import load_embeddings
from densekit.retrieval.index import build_index, save_index


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densekit index", description=__doc__.splitlines()[0])
    parser.add_argument("--passage_reps", required=True, help="folder, shard-* folder, or glob")
    parser.add_argument("--index_factory", default="Flat", help="FAISS factory string")
    parser.add_argument("--train_sample", type=int, default=100_000, help="rows to train on")
    parser.add_argument("--save_index", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier index")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_target(args.save_index, folder=True, overwrite=args.overwrite)
    ids, reps = load_embeddings(args.passage_reps)
    index = build_index(reps, args.index_factory, train_sample=args.train_sample)
    save_index(index, ids, args.save_index, overwrite=args.overwrite)
    print(f"densekit index: {index.ntotal} vectors ({args.index_factory}) -> {args.save_index}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
