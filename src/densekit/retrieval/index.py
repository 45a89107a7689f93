"""FAISS indexes: build from any factory string, save and reload with their ids, search in batches.

FAISS's own OpenMP thread count is left at its default (all cores): the searches here are
large batched matrix products, which is what it is tuned for.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from tqdm.auto import tqdm

from densekit.atomic import META_FILE, WRITER, atomic_path
from densekit.errors import ConfigError, DataError
from densekit.retrieval.embeddings import IDS_FILE, read_ids, write_ids

INDEX_FILE = "index.faiss"
METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
_ADD_CHUNK = 65_536
_FAISS_PREFIX = re.compile(r"^Error in .*? at \S+:\d+: ")


def _faiss_message(exc: BaseException) -> str:
    """FAISS's first error line without the C++ signature and source location in front."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return _FAISS_PREFIX.sub("", lines[0])


def _float32(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows, dtype=np.float32)


PRESETS = ("flat", "hnsw", "ivfpq", "ivfpq_refine")
_REFINE_FACTOR = 4
_PARAM = re.compile(r"^[A-Za-z_]\w*=\d+(\.\d+)?$")
_IVFPQ_MIN = 10_000  # PQ's 256 codewords per sub-quantizer need ~39 training vectors each
_GRAPH_QUANTIZER_LISTS = 16_384
_HNSW_EF_SEARCH = ((500_000, 128), (2_000_000, 256), (math.inf, 512))  # (vectors below, efSearch)


@dataclass(frozen=True)
class IndexPlan:
    """What to build for a corpus: FAISS factory string, default search parameters, sample."""

    factory: str
    search_params: str | None = None
    train_sample: int = 100_000


def plan_index(preset: str, count: int, dim: int, train_sample: int = 100_000) -> IndexPlan:
    """The FAISS index a preset means for ``count`` vectors of ``dim`` dimensions.

    flat   exact; memory 4*dim bytes a vector (the reference the others are measured against)
    hnsw   graph, no training; ~4*dim + 256 bytes a vector, fast queries, slow to build;
           efSearch 128 below 500,000 vectors, 256 below 2M, 512 from there (recall@100 at
           efSearch 128 fell from 0.95 at 100k to 0.76 at 3M on synthetic 384-d vectors; these
           kept it at 0.94-0.97)
    ivfpq  ~4*sqrt(count) lists (a power of two), dim/4 one-byte PQ codes a vector: ~16x
           smaller than flat, trained on a sample of at least 40 vectors a list; an HNSW
           coarse quantizer from 16,384 lists on; no polysemous training (``np``: its codes
           are not used by this search, and training them is slow); 1/16 of the lists probed
    ivfpq_refine  ivfpq probing 1/8 of the lists, then its top ``4*depth`` candidates re-scored
           with 8-bit scalar-quantized copies of the vectors (FAISS ``Refine(SQ8)``,
           ``k_factor_rf=4``): dim + dim/4 bytes a vector, ~3x smaller than flat, PQ's
           recall loss won back; what is left is the probing's
    Recall and speed of each, and of other search parameters, are measured in
    docs/benchmarks.md; ``--search_params`` overrides the defaults.
    """
    if preset == "flat":
        return IndexPlan("Flat", None, train_sample)
    if preset == "hnsw":
        ef = next(ef for below, ef in _HNSW_EF_SEARCH if count < below)
        return IndexPlan("HNSW32", f"efSearch={ef}", train_sample)
    if preset in ("ivfpq", "ivfpq_refine"):
        if count < _IVFPQ_MIN:
            raise ConfigError(
                f"--index_preset {preset} needs at least {_IVFPQ_MIN:,} passages to train "
                f"(got {count:,}); use flat"
            )
        lists = min(2 ** round(math.log2(4 * math.sqrt(count))), 2 ** int(math.log2(count / 40)))
        codes = max(m for m in range(1, max(dim // 4, 1) + 1) if dim % m == 0)
        sample = min(count, max(train_sample, 40 * lists))
        # beyond ~16M vectors, assigning them to lists by brute force dominates: use a graph
        quantizer = "_HNSW32" if lists >= _GRAPH_QUANTIZER_LISTS else ""
        factory = f"IVF{lists}{quantizer},PQ{codes}np"
        if preset == "ivfpq":
            return IndexPlan(factory, f"nprobe={max(16, lists // 16)}", sample)
        params = f"nprobe={max(32, lists // 8)},k_factor_rf={_REFINE_FACTOR}"
        return IndexPlan(f"{factory},Refine(SQ8)", params, sample)
    raise ConfigError(f"--index_preset {preset!r}: expected one of {', '.join(PRESETS)}")


def new_index(dim: int, index_factory: str = "Flat", metric: str = "ip") -> faiss.Index:
    """An empty FAISS index from a factory string, with FAISS's complaint as one clear line."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    try:
        return faiss.index_factory(dim, index_factory, METRICS[metric])
    except RuntimeError as exc:
        raise ConfigError(
            f"index factory {index_factory!r} rejected by FAISS: {_faiss_message(exc)}"
        ) from None


def build_index(
    embeddings: np.ndarray,
    index_factory: str = "Flat",
    metric: str = "ip",
    train_sample: int = 100_000,
    seed: int = 0,
    search_params: str | None = None,
) -> faiss.Index:
    """An index over ``embeddings`` (rows keep their positions as FAISS ids).

    Trainable indexes (IVF, PQ) are trained on a seeded random sample of at most
    ``train_sample`` rows, so building stays reproducible and bounded on large corpora.
    ``search_params`` are set on the empty index: a wrong one fails before any training.
    """
    if embeddings.ndim != 2:
        raise ConfigError(f"embeddings must be 2-D, got shape {embeddings.shape}")
    count, dim = embeddings.shape
    index = new_index(dim, index_factory, metric)
    set_search_params(index, search_params)
    if not index.is_trained:
        size = min(count, train_sample)
        rows = np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))
        try:
            index.train(_float32(embeddings[rows]))
        except RuntimeError as exc:
            raise ConfigError(
                f"index factory {index_factory!r} could not be trained on {size} vectors: "
                f"{_faiss_message(exc)}"
            ) from None
    for start in tqdm(range(0, count, _ADD_CHUNK), desc="Indexing", unit="chunk"):
        index.add(_float32(embeddings[start : start + _ADD_CHUNK]))
    return index


def build_planned(
    embeddings: np.ndarray,
    preset: str | None = None,
    index_factory: str = "Flat",
    search_params: str | None = None,
    train_sample: int = 100_000,
) -> faiss.Index:
    """:func:`build_index` for a preset sized from ``embeddings`` (or a factory string), with
    the preset's search parameters already set, each one given in ``search_params`` replacing
    the preset's of that name (``nprobe=64`` keeps ``ivfpq_refine``'s ``k_factor_rf``)."""
    if preset:
        plan = plan_index(preset, embeddings.shape[0], embeddings.shape[1], train_sample)
    else:
        plan = IndexPlan(index_factory, None, train_sample)
    params = merge_search_params(plan.search_params, search_params)
    return build_index(
        embeddings, plan.factory, train_sample=plan.train_sample, search_params=params
    )


def merge_search_params(base: str | None, override: str | None) -> str | None:
    """``base`` with each ``name=value`` of ``override`` replacing ``base``'s of that name."""
    check_search_params(base)
    check_search_params(override)
    pairs = dict(part.split("=") for text in (base, override) if text for part in text.split(","))
    return ",".join(f"{name}={value}" for name, value in pairs.items()) or None


def save_index(
    index: faiss.Index, ids: list[str], folder: str | os.PathLike, overwrite: bool = False
) -> None:
    """Write ``index.faiss``, ``ids.txt`` and ``meta.json`` into ``folder``, which appears only
    when complete; an earlier densekit index there is replaced only with ``overwrite``."""
    if len(ids) != index.ntotal:
        raise DataError(str(folder), f"{len(ids)} ids for an index of {index.ntotal} vectors")
    with atomic_path(folder, folder=True, overwrite=overwrite) as tmp:
        tmp.mkdir()
        faiss.write_index(index, str(tmp / INDEX_FILE))
        write_ids(tmp / IDS_FILE, ids)
        meta = {"writer": WRITER, "kind": "index", "count": len(ids), "dim": index.d}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_index(folder: str | os.PathLike) -> tuple[faiss.Index, list[str]]:
    """The index and ids written by :func:`save_index`.

    The index file is read by FAISS's own native reader (``faiss.read_index``), which trusts
    the bytes it parses: load only index files you trust, as you would a pickle.
    """
    folder = Path(folder)
    for name in (INDEX_FILE, IDS_FILE):
        if not (folder / name).is_file():
            raise DataError(str(folder), f"missing {name}")
    try:
        index = faiss.read_index(str(folder / INDEX_FILE))
    except RuntimeError as exc:
        raise DataError(str(folder / INDEX_FILE), _faiss_message(exc)) from None
    ids = read_ids(folder / IDS_FILE)
    if len(ids) != index.ntotal:
        raise DataError(str(folder), f"{IDS_FILE} has {len(ids)} ids for {index.ntotal} vectors")
    return index, ids


def search(
    index: faiss.Index,
    queries: np.ndarray,
    depth: int,
    batch_size: int = 1024,
    source: str = "query embeddings",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``depth`` scores and row positions per query (``-1`` where the index had fewer hits).

    ``source`` names the queries in errors. Batches bound the memory FAISS needs for the
    query-by-corpus score blocks.
    """
    if queries.ndim != 2:
        raise DataError(source, f"query embeddings must be 2-D, got shape {queries.shape}")
    if queries.shape[1] != index.d:
        raise DataError(
            source, f"query dimension {queries.shape[1]} does not match index dimension {index.d}"
        )
    if depth < 1 or batch_size < 1:
        raise ConfigError(f"depth and batch size must be positive, got {depth} and {batch_size}")
    count = queries.shape[0]
    k = min(depth, index.ntotal)
    scores = np.full((count, k), -np.inf, dtype=np.float32)
    indices = np.full((count, k), -1, dtype=np.int64)
    if k == 0:
        return scores, indices
    batches = range(0, count, batch_size)
    for start in tqdm(batches, desc="Searching", unit="batch", disable=not progress):
        batch_scores, batch_indices = index.search(_float32(queries[start : start + batch_size]), k)
        scores[start : start + batch_size] = batch_scores
        indices[start : start + batch_size] = batch_indices
    return scores, indices


def check_search_params(params: str | None) -> None:
    """Refuse, before any work, ``--search_params`` that is not ``name=number[,name=number]``."""
    bad = [part for part in (params or "").split(",") if params and not _PARAM.match(part)]
    if bad:
        raise ConfigError(
            f"--search_params {params!r}: expected name=number pairs joined by commas, "
            f"e.g. nprobe=32 or efSearch=128 (bad: {bad[0]!r})"
        )


def check_index_choice(preset: str | None, index_factory: str) -> None:
    """A preset or a factory string, not both; an unknown preset named with the known ones."""
    if preset is None:
        return
    if preset not in PRESETS:
        raise ConfigError(f"--index_preset {preset!r}: expected one of {', '.join(PRESETS)}")
    if index_factory != "Flat":
        raise ConfigError("give --index_preset or --index_factory, not both")


def set_search_params(index: faiss.Index, params: str | None) -> None:
    """Apply FAISS search-time parameters such as ``"nprobe=16"`` or ``"efSearch=128"``.

    IVF indexes search only ``nprobe=1`` list by default, which costs recall; this is FAISS's own
    ``ParameterSpace`` syntax (``name=value`` joined by commas), so any parameter FAISS knows
    for the index works. Higher ``nprobe``/``efSearch``: more recall, fewer queries a second.
    """
    if not params:
        return
    check_search_params(params)
    try:
        faiss.ParameterSpace().set_index_parameters(index, params)
    except RuntimeError as exc:
        raise ConfigError(f"--search_params {params!r}: {_faiss_message(exc)}") from None
