"""``densekit index``: build a FAISS index over passage embeddings and save it for searches.

The search parameters given (or the preset's) are stored in the index file, so a later
``densekit search --load_index`` searches with them unless told otherwise.
"""

from __future__ import annotations

import argparse
import sys

from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.errors import ConfigError

# densekit.retrieval.index.PRESETS, here so that --help loads no faiss (a test holds it)
PRESETS = ("flat", "hnsw", "ivfpq", "ivfpq_refine")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("densekit index", __doc__)
    parser.add_argument("--passage_reps", required=True, help="folder, shard-* folder, or glob")
    parser.add_argument("--index_factory", default="Flat", help="FAISS factory string")
    parser.add_argument(
        "--index_preset",
        default=None,
        help=f"{'|'.join(PRESETS)}: an index sized from the corpus (docs/scaling.md)",
    )
    parser.add_argument("--search_params", default=None, help='kept in the index, e.g. "nprobe=64"')
    parser.add_argument("--train_sample", type=int, default=100_000, help="rows to train on")
    parser.add_argument("--save_index", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier index")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import faiss

    from densekit.atomic import check_target
    from densekit.retrieval.embeddings import load_embeddings
    from densekit.retrieval.index import (
        build_planned,
        check_index_choice,
        check_search_params,
        save_index,
    )

    check_index_choice(args.index_preset, args.index_factory)
    check_search_params(args.search_params)
    if args.train_sample < 1:
        raise ConfigError(f"--train_sample must be positive, got {args.train_sample}")
    check_target(args.save_index, folder=True, overwrite=args.overwrite)
    ids, reps = load_embeddings(args.passage_reps)
    index = build_planned(
        reps, args.index_preset, args.index_factory, args.search_params, args.train_sample
    )
    save_index(index, ids, args.save_index, overwrite=args.overwrite)
    kind = type(faiss.downcast_index(index)).__name__
    print(f"densekit index: {index.ntotal} vectors ({kind}) -> {args.save_index}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
