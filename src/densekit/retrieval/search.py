"""Dense search: query embeddings against passage embeddings, as a run.

:func:`search_index` searches one index; :func:`search_shards` builds and searches one passage
shard at a time and merges the per-shard top-k (Tevatron's reducer), so a corpus larger than
memory can still be searched exactly with a Flat index.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import faiss
import numpy as np
from tqdm.auto import tqdm

from densekit.data.runs import Run, ranked
from densekit.errors import ConfigError, DataError
from densekit.retrieval.embeddings import load_embeddings
from densekit.retrieval.index import build_planned, search

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
) -> Iterator[tuple[str, dict[str, float]]]:
    """One global top-``depth`` per query from per-index ``(scores, global row)`` results.

    Rows of ``-1`` (an index returning fewer hits) are dropped. Equal scores are ordered by
    docid, so the ranking does not depend on how the passages were split into shards; only
    the head of each list (plus anything tied with its last score) is sorted in Python.
    """
    keep = depth + (1 if remove_query_ids else 0)
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
            yield qid, dict(hits[:depth])


def iter_search_index(
    query_ids: Sequence[str],
    query_reps: np.ndarray,
    index: faiss.Index,
    doc_ids: Sequence[str],
    depth: int,
    batch_size: int = 1024,
    remove_query_ids: bool = False,
    progress: bool = True,
) -> Iterator[tuple[str, dict[str, float]]]:
    """``(query id, hits)`` in query order, one batch of queries searched at a time.

    A caller can write each query's hits as they come: memory holds one batch of results.
    """
    extra = _TIE_MARGIN + (1 if remove_query_ids else 0)
    if depth < 1 or batch_size < 1:
        raise ConfigError(f"depth and batch size must be positive, got {depth} and {batch_size}")
    starts = range(0, len(query_ids), batch_size)
    for start in tqdm(starts, desc="Searching", unit="batch", disable=not progress):
        stop = start + batch_size
        part = search(index, query_reps[start:stop], depth + extra, batch_size, progress=False)
        yield from merge_topk(query_ids[start:stop], [part], doc_ids, depth, remove_query_ids)


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
    return dict(
        iter_search_index(
            query_ids, query_reps, index, doc_ids, depth, batch_size, remove_query_ids
        )
    )


def iter_search_shards(
    query_ids: Sequence[str],
    query_reps: np.ndarray,
    shard_specs: Sequence[str | os.PathLike],
    depth: int,
    index_preset: str | None = None,
    index_factory: str = "Flat",
    batch_size: int = 1024,
    remove_query_ids: bool = False,
    search_params: str | None = None,
) -> Iterator[tuple[str, dict[str, float]]]:
    """Search each passage shard separately (only one in memory), merged to a global top-k.

    Each shard gets the index ``index_preset`` means for its size (or ``index_factory``).
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
        check_dims(reps.shape[1], query_reps, spec)
        index = build_planned(reps, index_preset, index_factory, search_params)
        scores, rows = search(index, query_reps, depth + extra, batch_size)
        parts.append((scores, np.where(rows >= 0, rows + len(all_ids), -1)))
        all_ids.extend(ids)
        del index
    yield from merge_topk(query_ids, parts, all_ids, depth, remove_query_ids)


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
    """:func:`iter_search_shards` as one run in memory."""
    return dict(
        iter_search_shards(
            query_ids,
            query_reps,
            shard_specs,
            depth,
            None,
            index_factory,
            batch_size,
            remove_query_ids,
            search_params,
        )
    )


def merge_runs(runs: Sequence[Run], depth: int) -> Iterator[tuple[str, dict[str, float]]]:
    """One top-``depth`` per query from runs over disjoint passage shards (searched apart).

    Hits are ordered by score, equal scores by docid, as :func:`merge_topk` orders them: runs
    of depth ``depth`` written by ``densekit search`` on each shard merge to exactly the run of
    one search over all shards. A document listed in two runs is an error (shards overlap).
    """
    queries = dict.fromkeys(qid for run in runs for qid in run)
    for qid in queries:
        hits: dict[str, float] = {}
        for run in runs:
            for docid, score in run.get(qid, {}).items():
                if docid in hits:
                    raise DataError("runs", f"document {docid!r} of query {qid!r} is in two runs")
                hits[docid] = score
        yield qid, dict(ranked(hits)[:depth])


def check_dims(dim: int, queries: np.ndarray, source: str | os.PathLike) -> None:
    """Name the passage side in the error: that is the file most likely to be the wrong one."""
    if dim != queries.shape[1]:
        raise DataError(
            str(source),
            f"passage dimension {dim} does not match query dimension {queries.shape[1]}",
        )
