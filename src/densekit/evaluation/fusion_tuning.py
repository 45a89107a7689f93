"""Weights for weighted score fusion, chosen on judged queries (dev qrels).

Fusion itself (:mod:`densekit.retrieval.fusion`) needs no judgments; choosing its weights does,
so the search over the weight grid lives here, beside the metrics it maximises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from densekit.data.runs import Run
from densekit.errors import ConfigError
from densekit.evaluation.metrics import evaluate, parse_metrics
from densekit.retrieval.fusion import check_depth, check_options, query_tables, rank_query


@dataclass(frozen=True)
class Tuning:
    """The best weights found on dev qrels, their metric value, and every grid point tried."""

    metric: str
    weights: tuple[float, ...]
    value: float
    grid: list[dict] = field(repr=False)

    def as_dict(self) -> dict:
        """JSON-ready form (what ``densekit fuse --tuning_output`` writes)."""
        best = {"weights": list(self.weights), "value": self.value}
        return {"metric": self.metric, "best": best, "grid": self.grid}


def simplex_grid(n_runs: int, step: float = 0.1) -> list[tuple[float, ...]]:
    """Every weight vector of ``n_runs`` multiples of ``step`` that sum to 1.

    Ordered lexicographically (first run's weight ascending), which is also the tie order of
    :func:`tune_weights`. ``step`` must divide 1 (0.1, 0.05, 0.25, ...).
    """
    if n_runs < 1:
        raise ConfigError(f"the weight grid needs at least one run, got {n_runs}")
    parts = round(1 / step) if math.isfinite(step) and 0 < step <= 1 else 0
    if parts < 1 or not math.isclose(parts * step, 1.0, rel_tol=1e-9):
        raise ConfigError(f"grid step must divide 1 (e.g. 0.1 or 0.05), got {step}")
    counts: list[tuple[int, ...]] = [()]
    for _ in range(n_runs - 1):
        counts = [(*c, i) for c in counts for i in range(parts - sum(c) + 1)]
    return [tuple(i / parts for i in (*c, parts - sum(c))) for c in counts]


def tune_weights(
    runs: Sequence[Run],
    qrels: Mapping[str, Mapping[str, int]],
    metric: str = "ndcg@10",
    step: float = 0.1,
    normalize: str = "minmax",
    depth: int | None = None,
) -> Tuning:
    """Weighted-fusion weights that maximise ``metric`` on ``qrels`` over the simplex grid.

    Each grid point's fused run (cut at ``depth``, as it would be written) is scored with
    :func:`densekit.evaluation.metrics.evaluate`; equal values keep the earliest grid point.
    """
    names = parse_metrics(metric)
    if len(names) != 1:
        raise ConfigError(f"tuning optimises one metric, got {', '.join(names)}")
    check_options("weighted", len(runs), normalize=normalize)
    check_depth(depth)
    grid = simplex_grid(len(runs), step)
    queries = [q for q in query_tables(runs, "weighted", 0, normalize) if qrels.get(q.qid)]
    if not queries:
        raise ConfigError("no query of the runs is judged in the tuning qrels")
    tried: list[dict] = []
    best: tuple[tuple[float, ...], float] | None = None
    for weights in grid:
        vector = np.asarray(weights)
        run = {query.qid: rank_query(query, vector, depth) for query in queries}
        value = evaluate(run, qrels, names)[1][names[0]]
        tried.append({"weights": list(weights), "value": value})
        if best is None or value > best[1]:
            best = (weights, value)
    return Tuning(names[0], best[0], best[1], tried)
