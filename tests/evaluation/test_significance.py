"""Paired tests against independent computations: scipy on pytrec_eval's per-query values, an
exact sign-flip enumeration for the randomization test, Holm by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import pytrec_eval
from scipy import stats

from densekit.errors import ConfigError
from densekit.evaluation.significance import compare_runs, holm, pairwise


def test_holm_by_hand():
    # sorted: 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> 0.09 (monotone), 0.2*1=0.2
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def _random_system(rng, qrels, docs):
    return {q: {d: float(rng.normal()) for d in docs} for q in qrels}


@pytest.fixture
def systems():
    rng = np.random.default_rng(3)
    docs = [f"d{i}" for i in range(30)]
    qrels = {f"q{i}": {d: int(rng.integers(0, 3)) for d in rng.choice(docs, 5)} for i in range(12)}
    base = _random_system(rng, qrels, docs)
    better = {q: {d: s + (2.0 if qrels[q].get(d, 0) > 0 else 0.0) for d, s in hits.items()}
              for q, hits in base.items()}  # fmt: skip
    return qrels, base, better


def test_t_test_equals_scipy_on_pytrec_eval_values(systems):
    qrels, base, better = systems
    rows = compare_runs({"base": base, "better": better}, qrels, ["ndcg@10"], resamples=2000)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    a = evaluator.evaluate(better)
    b = evaluator.evaluate(base)
    qids = sorted(qrels)
    x = [a[q]["ndcg_cut_10"] for q in qids]
    y = [b[q]["ndcg_cut_10"] for q in qids]
    assert rows[0].t_test_p == pytest.approx(stats.ttest_rel(x, y).pvalue, rel=1e-6)
    assert rows[0].difference == pytest.approx(np.mean(x) - np.mean(y), rel=1e-9)
    assert rows[0].wins + rows[0].ties + rows[0].losses == len(qids)


def test_randomization_p_within_monte_carlo_error_of_the_exact_value(systems):
    qrels, base, better = systems
    resamples = 10_000
    row = compare_runs({"b": base, "x": better}, qrels, ["mrr@10"], resamples, seed=1)[0]
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    a, b = evaluator.evaluate(better), evaluator.evaluate(base)
    diff = np.array([a[q]["recip_rank"] - b[q]["recip_rank"] for q in sorted(qrels)])
    observed = abs(diff.mean())
    flips = [
        abs((diff * np.array(signs)).mean())
        for signs in itertools.product((1, -1), repeat=len(diff))
    ]
    exact = np.mean([f >= observed - 1e-12 for f in flips])
    error = 4 * math.sqrt(max(exact * (1 - exact), 1e-4) / resamples) + 1 / resamples
    assert abs(row.randomization_p - exact) <= error


def test_pairwise_tests_every_pair_and_holm_corrects_over_all(systems):
    qrels, base, better = systems
    worse = {q: {d: -s for d, s in hits.items()} for q, hits in better.items()}
    runs = {"base": base, "better": better, "worse": worse}
    rows = pairwise(runs, qrels, "ndcg@10", resamples=2000, seed=4)
    assert [(r.baseline, r.run) for r in rows] == [
        ("base", "better"), ("base", "worse"), ("better", "worse")
    ]  # fmt: skip
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    scores = {name: evaluator.evaluate(run) for name, run in runs.items()}
    raw = []
    for row in rows:
        x = np.array([scores[row.run][q]["ndcg_cut_10"] for q in sorted(qrels)])
        y = np.array([scores[row.baseline][q]["ndcg_cut_10"] for q in sorted(qrels)])
        assert row.difference == pytest.approx((x - y).mean(), rel=1e-9)
        raw.append(row.randomization_p)
    m = len(raw)  # Holm by hand over the three pairs
    order = sorted(range(m), key=lambda i: raw[i])
    expected, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * raw[i]))
        expected[i] = running
    assert [r.holm_p for r in rows] == pytest.approx(expected)


def test_identical_runs_and_bad_input(systems):
    qrels, base, _ = systems
    row = compare_runs({"a": base, "b": base}, qrels, ["ndcg@10"], resamples=1000)[0]
    assert (row.t_test_p, row.randomization_p, row.ties) == (1.0, 1.0, len(qrels))
    with pytest.raises(ConfigError, match="no query in common"):
        compare_runs({"a": base, "b": {"zz": {"d1": 1.0}}}, qrels, ["ndcg@10"])
    with pytest.raises(ConfigError, match="at least two runs"):
        compare_runs({"a": base}, qrels, ["ndcg@10"])


def test_compare_command(systems, tmp_path, capsys):
    import json

    from densekit.commands import main as cli
    from densekit.data.runs import write_run

    qrels, base, better = systems
    (tmp_path / "qrels.txt").write_text(
        "".join(f"{q} 0 {d} {r}\n" for q, docs in qrels.items() for d, r in docs.items())
    )
    write_run(tmp_path / "a.trec", base)
    write_run(tmp_path / "b.trec", better)
    out = tmp_path / "cmp.json"
    argv = ["compare", str(tmp_path / "a.trec"), str(tmp_path / "b.trec"), "--qrels",
            str(tmp_path / "qrels.txt"), "--metrics", "ndcg@10,recall@5", "--output", str(out)]  # fmt: skip
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert "Holm p" in printed and "wins" in printed
    saved = json.loads(out.read_text())
    assert len(saved["comparisons"]) == 2
    assert all(c["holm_p"] >= c["randomization_p"] for c in saved["comparisons"])
