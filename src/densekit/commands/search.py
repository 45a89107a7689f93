"""``densekit search``: query embeddings against passage embeddings, written as a run file.

By default every passage shard goes into one index; ``--shard_by_shard`` indexes and searches
one shard at a time and merges the per-shard top-k. Queries are searched a batch at a time and
the run written as it goes (under a temporary name, renamed when complete). Tevatron's pickled
embeddings (``--query_reps query_emb.pkl --passage_reps 'corpus_emb.*.pkl'``) are read as they
are, by a restricted reader that runs nothing in the file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from densekit.atomic import check_target
from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.compat import apply as peer_apply
from densekit.data.runs import FORMATS
from densekit.errors import ConfigError

# densekit.retrieval.index.PRESETS, here so that --help loads no faiss (a test holds it)
PRESETS = ("flat", "hnsw", "ivfpq", "ivfpq_refine")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("densekit search", __doc__)
    parser.add_argument(
        "--query_reps", required=True, help="query embedding folder (or Tevatron pickle)"
    )
    parser.add_argument(
        "--passage_reps",
        help="passage embedding folder, folder of shard-* folders, or a quoted glob of folders "
        "(or of Tevatron pickles)",
    )
    parser.add_argument("--depth", type=int, default=100, help="documents kept per query")
    parser.add_argument(
        "--batch_size",
        type=int,
        default=1024,
        help="queries per FAISS call (large batches use BLAS best)",
    )
    parser.add_argument("--save_ranking_to", required=True, help="run file to write")
    parser.add_argument("--index_factory", default="Flat", help="FAISS factory string")
    parser.add_argument(
        "--index_preset",
        default=None,
        help=f"{'|'.join(PRESETS)}: an index sized from the corpus (docs/scaling.md)",
    )
    parser.add_argument(
        "--search_params",
        default=None,
        help='FAISS search parameters, e.g. "nprobe=64" or "efSearch=256": more recall, slower',
    )
    stored = parser.add_mutually_exclusive_group()
    stored.add_argument("--save_index", help="folder to keep the built index in")
    stored.add_argument("--load_index", help="folder of an index saved with --save_index")
    parser.add_argument(
        "--shard_by_shard",
        action="store_true",
        help="index and search one passage shard at a time, then merge",
    )
    parser.add_argument(
        "--ranking_format", choices=FORMATS, default="trec", help="layout of the run file"
    )
    parser.add_argument("--run_tag", default="densekit", help="tag in the run's last column")
    parser.add_argument(
        "--remove_query_from_results",
        action="store_true",
        help="drop a passage whose id equals the query id (as BEIR evaluation does)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier --save_index")
    peer_apply.add_to_parser(parser, "search")  # Tevatron's --save_text, --shard_search, ...
    return parser


def _check(args: argparse.Namespace) -> None:
    from densekit.retrieval.index import check_index_choice, check_search_params

    if args.depth < 1 or args.batch_size < 1:
        raise ConfigError("--depth and --batch_size must be positive")
    if args.load_index and (args.passage_reps or args.shard_by_shard):
        raise ConfigError("--load_index replaces --passage_reps and --shard_by_shard")
    if not args.load_index and not args.passage_reps:
        raise ConfigError("give --passage_reps (or --load_index)")
    if args.save_index and args.shard_by_shard:
        raise ConfigError("--save_index needs one index; it cannot be used with --shard_by_shard")
    check_index_choice(args.index_preset, args.index_factory)
    if args.load_index and args.index_preset:
        raise ConfigError("--index_preset builds an index; --load_index reads a built one")
    check_search_params(args.search_params)
    check_target(args.save_ranking_to, folder=False)
    if args.save_index:
        check_target(args.save_index, folder=True, overwrite=args.overwrite)


def _one_index_run(
    args: argparse.Namespace, query_ids: list[str], query_reps
) -> Iterator[tuple[str, dict[str, float]]]:
    """The run over one index (loaded, or built from every passage shard), query by query."""
    from densekit.compat.tevatron_pickle import load_reps
    from densekit.retrieval.index import build_planned, load_index, save_index, set_search_params
    from densekit.retrieval.search import check_dims, iter_search_index

    if args.load_index:
        index, doc_ids = load_index(args.load_index)
        check_dims(index.d, query_reps, args.load_index)
        set_search_params(index, args.search_params)
    else:
        doc_ids, passage_reps = load_reps(args.passage_reps)
        check_dims(passage_reps.shape[1], query_reps, args.passage_reps)
        index = build_planned(
            passage_reps, args.index_preset, args.index_factory, args.search_params
        )
        if args.save_index:
            save_index(index, doc_ids, args.save_index, overwrite=args.overwrite)
    return iter_search_index(
        query_ids,
        query_reps,
        index,
        doc_ids,
        args.depth,
        args.batch_size,
        args.remove_query_from_results,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    peer_apply.apply_search(args)
    _check(args)
    from densekit.compat.tevatron_pickle import load_reps, shard_specs
    from densekit.data.runs import write_run
    from densekit.retrieval.search import iter_search_shards

    query_ids, query_reps = load_reps(args.query_reps)
    if not args.shard_by_shard:
        run = _one_index_run(args, query_ids, query_reps)
        write_run(args.save_ranking_to, run, tag=args.run_tag, fmt=args.ranking_format)
        return 0
    with shard_specs(args.passage_reps) as shards:
        run = iter_search_shards(
            query_ids,
            query_reps,
            shards,
            args.depth,
            args.index_preset,
            args.index_factory,
            args.batch_size,
            args.remove_query_from_results,
            args.search_params,
        )
        write_run(args.save_ranking_to, run, tag=args.run_tag, fmt=args.ranking_format)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
