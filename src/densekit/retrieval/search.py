"""Dense search: query embeddings against passage embeddings, written as a run file.

By default every passage shard goes into one index. ``--shard_by_shard`` builds and searches
one shard at a time and merges the per-shard top-k (Tevatron's reducer), so a corpus larger
than memory can still be searched exactly with a Flat index.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import faiss
import numpy as np
from tqdm.auto import tqdm

from densekit.errors import ConfigError, DataError
from densekit.retrieval.embeddings import embedding_shards, load_embeddings
from densekit.retrieval.index import (
    build_index,
    load_index,
    save_index,
    search,
    set_search_params,
)
from densekit.retrieval.trec import FORMATS, write_run

Run = dict[str, list[tuple[str, float]]]
# Extra hits fetched so that documents tied at the cut-off are chosen by docid, not by FAISS's
# internal order: sharded and unsharded searches then agree even on exact ties.
_TIE_MARGIN = 8
_MERGE_CHUNK = 1024


def merge_topk(
    query_ids: Sequence[str],
    parts: Sequence[tuple[np.ndarray, np.ndarray]],
    doc_ids: Sequence[str],
    depth: int,
    remove_query_ids: bool = False,
) -> Run:
    """One global top-``depth`` per query from per-index ``(scores, global row)`` results.

    Rows of ``-1`` (an index returning fewer hits) are dropped. Equal scores are ordered by
    docid, so the ranking does not depend on how the passages were split into shards; only
    the head of each list (plus anything tied with its last score) is sorted in Python.
    """
    keep = depth + (1 if remove_query_ids else 0)
    run: Run = {}
    for start in range(0, len(query_ids), _MERGE_CHUNK):
        stop = start + _MERGE_CHUNK
        scores = np.concatenate([part[0][start:stop] for part in parts], axis=1)
        rows = np.concatenate([part[1][start:stop] for part in parts], axis=1)
        valid = rows >= 0
        order = np.argsort(np.where(valid, -scores, np.inf), axis=1, kind="stable")
        ranked = np.take_along_axis(np.where(valid, scores, -np.inf), order, axis=1)
        for offset, qid in enumerate(query_ids[start:stop]):
            head = min(keep, int(valid[offset].sum()))
            if head:
                last = ranked[offset, head - 1]
                head = int(np.searchsorted(-ranked[offset], -last, side="right"))
            hits = sorted(
                (
                    (doc_ids[rows[offset, col]], float(scores[offset, col]))
                    for col in order[offset, :head].tolist()
                ),
                key=lambda hit: (-hit[1], hit[0]),
            )
            if remove_query_ids:
                hits = [hit for hit in hits if hit[0] != qid]
            run[qid] = hits[:depth]
    return run


def search_index(
    query_ids: Sequence[str],
    query_reps: np.ndarray,
    index: faiss.Index,
    doc_ids: Sequence[str],
    depth: int,
    batch_size: int = 1024,
    remove_query_ids: bool = False,
) -> Run:
    """Search one index whose row positions map to ``doc_ids``."""
    extra = _TIE_MARGIN + (1 if remove_query_ids else 0)
    scores, rows = search(index, query_reps, depth + extra, batch_size)
    return merge_topk(query_ids, [(scores, rows)], doc_ids, depth, remove_query_ids)


def search_shards(
    query_ids: Sequence[str],
    query_reps: np.ndarray,
    shard_specs: Sequence[str | os.PathLike],
    depth: int,
    index_factory: str = "Flat",
    batch_size: int = 1024,
    remove_query_ids: bool = False,
    search_params: str | None = None,
) -> Run:
    """Search each passage shard separately (only one in memory) and merge to a global top-k.

    With a Flat index the result equals searching all shards at once.
    """
    extra = _TIE_MARGIN + (1 if remove_query_ids else 0)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    all_ids: list[str] = []
    seen: set[str] = set()
    for spec in tqdm(shard_specs, desc="Shards", unit="shard"):
        ids, reps = load_embeddings(spec)
        for docid in ids:
            if docid in seen:
                raise DataError(str(spec), f"duplicate id {docid!r} (also in an earlier shard)")
            seen.add(docid)
        _check_dims(reps.shape[1], query_reps, spec)
        index = build_index(reps, index_factory)
        set_search_params(index, search_params)
        scores, rows = search(index, query_reps, depth + extra, batch_size)
        parts.append((scores, np.where(rows >= 0, rows + len(all_ids), -1)))
        all_ids.extend(ids)
    return merge_topk(query_ids, parts, all_ids, depth, remove_query_ids)


def _check_dims(dim: int, queries: np.ndarray, source: str | os.PathLike) -> None:
    """Name the passage side in the error: that is the file most likely to be the wrong one."""
    if dim != queries.shape[1]:
        raise DataError(
            str(source),
            f"passage dimension {dim} does not match query dimension {queries.shape[1]}",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="densekit search", description="Search query embeddings against passage embeddings."
    )
    parser.add_argument("--query_reps", required=True, help="query embedding folder")
    parser.add_argument(
        "--passage_reps",
        help="passage embedding folder, folder of shard-* folders, or a quoted glob of folders",
    )
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument(
        "--batch_size",
        type=int,
        default=1024,
        help="queries per FAISS call (large batches use BLAS best)",
    )
    parser.add_argument("--save_ranking_to", required=True)
    parser.add_argument("--index_factory", default="Flat", help="FAISS factory string")
    parser.add_argument(
        "--search_params", default=None, help='FAISS search parameters, e.g. "nprobe=16"'
    )
    stored = parser.add_mutually_exclusive_group()
    stored.add_argument("--save_index", help="folder to keep the built index in")
    stored.add_argument("--load_index", help="folder of an index saved with --save_index")
    parser.add_argument(
        "--shard_by_shard",
        action="store_true",
        help="index and search one passage shard at a time, then merge",
    )
    parser.add_argument("--ranking_format", choices=FORMATS, default="trec")
    parser.add_argument("--run_tag", default="densekit")
    parser.add_argument(
        "--remove_query_from_results",
        action="store_true",
        help="drop a passage whose id equals the query id (as BEIR evaluation does)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.depth < 1 or args.batch_size < 1:
        raise ConfigError("--depth and --batch_size must be positive")
    if args.load_index and (args.passage_reps or args.shard_by_shard):
        raise ConfigError("--load_index replaces --passage_reps and --shard_by_shard")
    if not args.load_index and not args.passage_reps:
        raise ConfigError("give --passage_reps (or --load_index)")
    if args.save_index and args.shard_by_shard:
        raise ConfigError("--save_index needs one index; it cannot be used with --shard_by_shard")

    query_ids, query_reps = load_embeddings(args.query_reps)
    if args.shard_by_shard:
        run = search_shards(
            query_ids,
            query_reps,
            embedding_shards(args.passage_reps),
            args.depth,
            args.index_factory,
            args.batch_size,
            args.remove_query_from_results,
            args.search_params,
        )
    else:
        if args.load_index:
            index, doc_ids = load_index(args.load_index)
            _check_dims(index.d, query_reps, args.load_index)
        else:
            doc_ids, passage_reps = load_embeddings(args.passage_reps)
            _check_dims(passage_reps.shape[1], query_reps, args.passage_reps)
            index = build_index(passage_reps, args.index_factory)
            if args.save_index:
                save_index(index, doc_ids, args.save_index)
        set_search_params(index, args.search_params)
        run = search_index(
            query_ids,
            query_reps,
            index,
            doc_ids,
            args.depth,
            args.batch_size,
            args.remove_query_from_results,
        )
    write_run(args.save_ranking_to, run, tag=args.run_tag, fmt=args.ranking_format)
    return 0
