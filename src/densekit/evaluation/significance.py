"""Is a difference between two systems real? Paired tests over per-query metric values.

For each metric and each run against the baseline (the first run): the paired two-sided t-test
(``scipy.stats.ttest_rel``), the paired randomization test (``scipy.stats.permutation_test``,
sign flips of the per-query differences, seeded, 10,000 resamples by default), Holm's
step-down correction over every (run, metric) pair, and the per-query picture: wins, ties,
losses, and the queries that gained or lost most.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from densekit.errors import ConfigError
from densekit.evaluation.metrics import evaluate

PerQuery = dict[str, dict[str, float]]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (step-down, monotone, capped at 1)."""
    order = np.argsort(p_values, kind="stable")
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[index])))
        adjusted[index] = running
    return adjusted


def randomization_p(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> float:
    """Two-sided paired randomization test of mean(a - b) = 0 (sign flips per query)."""
    if np.allclose(a, b):
        return 1.0
    result = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=resamples,
        alternative="two-sided",
        random_state=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def t_test_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test; identical systems give p = 1 instead of NaN."""
    if np.allclose(a, b):
        return 1.0
    return float(stats.ttest_rel(a, b).pvalue)


@dataclass
class Comparison:
    """One run against a baseline run (named in ``baseline``) on one metric."""

    run: str
    metric: str
    baseline_mean: float
    run_mean: float
    difference: float
    t_test_p: float
    randomization_p: float
    holm_p: float = 1.0
    wins: int = 0
    ties: int = 0
    losses: int = 0
    largest_gains: list[tuple[str, float]] = field(default_factory=list)
    largest_losses: list[tuple[str, float]] = field(default_factory=list)
    baseline: str = ""


def _compare(name: str, metric: str, base: PerQuery, other: PerQuery, qids, resamples, seed, top):
    a = np.array([other[q][metric] for q in qids])
    b = np.array([base[q][metric] for q in qids])
    diff = a - b
    order = np.argsort(diff, kind="stable")
    return Comparison(
        run=name,
        metric=metric,
        baseline_mean=float(b.mean()),
        run_mean=float(a.mean()),
        difference=float(diff.mean()),
        t_test_p=t_test_p(a, b),
        randomization_p=randomization_p(a, b, resamples, seed),
        wins=int((diff > 0).sum()),
        ties=int((diff == 0).sum()),
        losses=int((diff < 0).sum()),
        largest_gains=[(qids[i], float(diff[i])) for i in order[::-1][:top] if diff[i] > 0],
        largest_losses=[(qids[i], float(diff[i])) for i in order[:top] if diff[i] < 0],
    )


def compare_runs(
    runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Sequence[str],
    resamples: int = 10_000,
    seed: int = 0,
    top: int = 5,
) -> list[Comparison]:
    """Every run after the first against the first, on every metric, Holm-corrected together.

    Queries are those of ``qrels`` (trec_eval ``-c``: a query a run misses scores 0).
    """
    if len(runs) < 2:
        raise ConfigError("compare needs at least two runs")
    if resamples < 1000:
        raise ConfigError(f"--resamples {resamples}: use at least 1,000 (10,000 by default)")
    names = list(runs)
    for name in names:
        if not any(q in qrels for q in runs[name]):
            raise ConfigError(f"run {name} has no query in common with the qrels")
    per_query = {name: evaluate(runs[name], qrels, metrics)[0] for name in names}
    qids = sorted(per_query[names[0]])
    rows = [
        _compare(name, metric, per_query[names[0]], per_query[name], qids, resamples, seed, top)
        for name in names[1:]
        for metric in metrics
    ]
    for row, adjusted in zip(rows, holm([r.randomization_p for r in rows]), strict=True):
        row.holm_p, row.baseline = adjusted, names[0]
    return rows


def pairwise(
    runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    qrels: Mapping[str, Mapping[str, int]],
    metric: str,
    resamples: int = 10_000,
    seed: int = 0,
) -> list[Comparison]:
    """Every pair of runs (later against earlier) on one metric, Holm-corrected over all pairs:
    for a results table that marks which rows differ significantly from which."""
    names = list(runs)
    if len(names) < 2:
        raise ConfigError("a pairwise comparison needs at least two runs")
    per_query = {name: evaluate(runs[name], qrels, [metric])[0] for name in names}
    qids = sorted(per_query[names[0]])
    rows = []
    for i, earlier in enumerate(names):
        for later in names[i + 1 :]:
            row = _compare(
                later, metric, per_query[earlier], per_query[later], qids, resamples, seed, 0
            )
            row.baseline = earlier
            rows.append(row)
    for row, adjusted in zip(rows, holm([r.randomization_p for r in rows]), strict=True):
        row.holm_p = adjusted
    return rows


def as_dicts(rows: Sequence[Comparison]) -> list[dict]:
    return [asdict(row) for row in rows]
