"""Run fusion for hybrid search: reciprocal rank fusion and weighted score fusion.

Lexical (BM25) and dense runs find different relevant documents; combining them usually beats
either. RRF uses ranks only, so it needs no score calibration and no tuning. Weighted fusion
normalises each run's scores per query (their scales differ by orders of magnitude) and sums
them with per-run weights, which :func:`tune_weights` picks on dev qrels.

Conventions, shared by every function here:

* a document a run did not retrieve for a query gets that run's floor for the query: nothing
  (0) under RRF, the run's lowest normalised score under weighted fusion;
* the queries fused are the union of the runs' queries; :attr:`Fusion.missing` says how many
  of them each run lacked (a run without a query contributes nothing to it);
* fused documents are ranked by score descending, equal scores by docid ascending, and each
  score is summed from its sorted contributions, so documents with the same contributions
  from different runs tie exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from densekit.data.runs import Run, ranked
from densekit.errors import ConfigError, DataError

METHODS = ("rrf", "weighted")
NORMALISATIONS = ("minmax", "zscore", "none")


@dataclass(frozen=True)
class Fusion:
    """A fused run and, per input run, how many of its queries that run lacked."""

    run: Run
    missing: list[int]


@dataclass(frozen=True)
class _Query:
    """One query's candidates (docid ascending) and a (documents, runs) table of floor-filled
    contributions; a run without the query has a column of zeros."""

    qid: str
    docs: list[str]
    values: np.ndarray


def check_options(
    method: str,
    n_runs: int,
    k: float = 60,
    weights: Sequence[float] | None = None,
    normalize: str = "minmax",
) -> None:
    """Refuse, before any run is read, options that cannot fuse ``n_runs`` runs."""
    if method not in METHODS:
        raise ConfigError(f"unknown fusion method {method!r}; expected one of {', '.join(METHODS)}")
    if n_runs < 2:
        raise ConfigError(f"fusion needs at least two runs, got {n_runs}")
    if method == "rrf":
        if weights is not None:
            raise ConfigError("weights are for weighted fusion; rrf has none")
        if not (math.isfinite(k) and k >= 0):
            raise ConfigError(f"the rrf constant k must be a number >= 0, got {k}")
        return
    if normalize not in NORMALISATIONS:
        raise ConfigError(
            f"unknown normalisation {normalize!r}; expected one of {', '.join(NORMALISATIONS)}"
        )
    if weights is not None:
        _check_weights(weights, n_runs)


def _check_weights(weights: Sequence[float], n_runs: int) -> None:
    if len(weights) != n_runs:
        raise ConfigError(f"{len(weights)} weights given for {n_runs} runs; give one per run")
    if not all(math.isfinite(w) for w in weights):
        raise ConfigError(f"weights must be finite numbers, got {list(weights)}")
    if any(w < 0 for w in weights):
        raise ConfigError(f"weights must not be negative, got {list(weights)}")
    if not any(w > 0 for w in weights):
        raise ConfigError("weights are all zero; at least one run must count")


def check_depth(depth: int | None) -> None:
    if depth is not None and depth < 1:
        raise ConfigError(f"depth must be positive, got {depth}")


def normalise_scores(hits: Mapping[str, float], method: str) -> dict[str, float]:
    """One query's scores on a scale comparable across runs.

    ``minmax`` maps to [0, 1], ``zscore`` to mean 0 and (population) standard deviation 1,
    ``none`` keeps the scores. Equal scores carry no order, so they all map to 0.
    """
    if method not in NORMALISATIONS:
        raise ConfigError(
            f"unknown normalisation {method!r}; expected one of {', '.join(NORMALISATIONS)}"
        )
    values = np.fromiter(hits.values(), dtype=np.float64, count=len(hits))
    if method == "minmax" and values.size:
        low, high = values.min(), values.max()
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    elif method == "zscore" and values.size:
        std = values.std()
        values = (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    return dict(zip(hits, values.tolist(), strict=True))


def _rrf_table(hits: Mapping[str, float], k: float) -> tuple[dict[str, float], float]:
    return {docid: 1.0 / (k + rank) for rank, (docid, _) in enumerate(ranked(hits), 1)}, 0.0


def _weighted_table(
    hits: Mapping[str, float], normalize: str, label: str, qid: str
) -> tuple[dict[str, float], float]:
    if not all(math.isfinite(score) for score in hits.values()):
        raise DataError(label, f"query {qid!r} has a score that is not a finite number")
    values = normalise_scores(hits, normalize)
    return values, min(values.values())


def _queries(runs: Sequence[Run]) -> list[str]:
    """The union of the runs' queries, in first-seen order."""
    return list(dict.fromkeys(qid for run in runs for qid, hits in run.items() if hits))


def query_tables(runs: Sequence[Run], method: str, k: float, normalize: str) -> Iterator[_Query]:
    """Each query's contribution table, one query at a time (memory stays one query's worth)."""
    for qid in _queries(runs):
        per_run = []
        for number, run in enumerate(runs, start=1):
            hits = run.get(qid)
            if not hits:
                per_run.append(({}, 0.0))
            elif method == "rrf":
                per_run.append(_rrf_table(hits, k))
            else:
                per_run.append(_weighted_table(hits, normalize, f"run {number}", qid))
        docs = sorted({docid for values, _ in per_run for docid in values})
        columns = [[values.get(docid, floor) for docid in docs] for values, floor in per_run]
        yield _Query(qid, docs, np.array(columns, dtype=np.float64).T)


def rank_query(query: _Query, weights: np.ndarray, depth: int | None) -> dict[str, float]:
    """Weighted sum per document (contributions sorted first, so equal sets tie exactly),
    ranked by score descending, equal scores by docid ascending, cut at ``depth``."""
    contributions = np.sort(query.values * weights, axis=1)
    scores = contributions.sum(axis=1)
    order = np.argsort(-scores, kind="stable")[:depth]
    return {query.docs[i]: float(scores[i]) for i in order}


def _missing(runs: Sequence[Run], queries: Sequence[str]) -> list[int]:
    return [sum(1 for qid in queries if not run.get(qid)) for run in runs]


def fuse(
    runs: Sequence[Run],
    method: str = "rrf",
    *,
    k: float = 60,
    weights: Sequence[float] | None = None,
    normalize: str = "minmax",
    depth: int | None = None,
) -> Fusion:
    """Fuse ``runs`` by ``method`` (``rrf`` or ``weighted``); see :func:`rrf`, :func:`weighted`."""
    check_options(method, len(runs), k, weights, normalize)
    check_depth(depth)
    if weights is not None:
        vector = np.asarray(weights, dtype=np.float64)
    else:  # rrf sums reciprocal ranks; weighted fusion's default is the simplex's centre
        vector = np.full(len(runs), 1.0 if method == "rrf" else 1.0 / len(runs))
    fused = {
        query.qid: rank_query(query, vector, depth)
        for query in query_tables(runs, method, k, normalize)
    }
    return Fusion(fused, _missing(runs, list(fused)))


def rrf(runs: Sequence[Run], k: float = 60, depth: int | None = None) -> Fusion:
    """Reciprocal rank fusion: a document scores ``sum over runs of 1 / (k + rank)``.

    Ranks are 1-based after sorting each run by score descending, ties by docid ascending;
    a run that did not retrieve the document adds nothing. ``depth`` keeps the top documents.
    """
    return fuse(runs, "rrf", k=k, depth=depth)


def weighted(
    runs: Sequence[Run],
    weights: Sequence[float] | None = None,
    normalize: str = "minmax",
    depth: int | None = None,
) -> Fusion:
    """Weighted score fusion: ``sum over runs of weight * normalised score`` (weights ``1/n``
    when none are given; given ones are used as they are). A document a run did not retrieve gets the run's lowest
    normalised score for the query (0 after ``minmax``)."""
    return fuse(runs, "weighted", weights=weights, normalize=normalize, depth=depth)
