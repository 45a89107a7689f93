"""densekit's metrics must agree with trec_eval (through pytrec_eval) to a relative 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval

from densekit.errors import DensekitError
from densekit.evaluation.metrics import evaluate, format_table, parse_metrics

CUTOFFS = (1, 3, 5, 10, 20)
TREC_NAMES = {
    "ndcg": "ndcg_cut_{k}",
    "recall": "recall_{k}",
    "map": "map_cut_{k}",
    "p": "P_{k}",
    "success": "success_{k}",
}


def _reference(run, qrels, threshold):
    """Per-query values for every metric from pytrec_eval, trec_eval -c style."""
    cut = ",".join(str(k) for k in CUTOFFS)
    measures = {f"{m}.{cut}" for m in ("ndcg_cut", "recall", "map_cut", "P", "success")}
    measures.add("recip_rank")
    found = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=threshold).evaluate(run)
    expected = {}
    for qid in qrels:
        values = found.get(qid, {})
        row = {}
        for k in CUTOFFS:
            for kind, trec in TREC_NAMES.items():
                row[f"{kind}@{k}"] = values.get(trec.format(k=k), 0.0)
            # recip_rank is not cut: the first relevant rank r is within k iff 1/r >= 1/k.
            rr = values.get("recip_rank", 0.0)
            row[f"mrr@{k}"] = rr if rr >= 1.0 / k else 0.0
        expected[qid] = row
    return expected


def _random_case(rng):
    doc_pool = [f"d{n}" for n in rng.choice(200, size=40, replace=False)]
    qrels, run = {}, {}
    for q in range(int(rng.integers(1, 8))):
        qid = f"q{q}"
        judged = rng.choice(doc_pool, size=int(rng.integers(1, 12)), replace=False)
        qrels[qid] = {str(d): int(rng.choice([-1, 0, 0, 1, 2, 3])) for d in judged}
        if rng.random() < 0.8:
            depth = int(rng.integers(0, 30))
            docs = rng.choice(doc_pool, size=depth, replace=False)
            # Few distinct scores, so ties (broken by docid) are frequent.
            run[qid] = {str(d): float(rng.integers(0, 6)) / 2 for d in docs}
    run["not_judged"] = {"d1": 1.0}
    return run, qrels


def test_matches_pytrec_eval_on_random_runs():
    rng = np.random.default_rng(1234)
    metrics = [f"{kind}@{k}" for kind in (*TREC_NAMES, "mrr") for k in CUTOFFS]
    for _ in range(200):
        run, qrels = _random_case(rng)
        threshold = int(rng.integers(1, 3))
        per_query, mean = evaluate(run, qrels, metrics, relevance_threshold=threshold)
        expected = _reference(run, qrels, threshold)
        assert per_query.keys() == expected.keys()
        for qid, row in expected.items():
            for name, value in row.items():
                assert per_query[qid][name] == pytest.approx(value, rel=1e-6), (qid, name)
        for name in metrics:
            reference_mean = np.mean([row[name] for row in expected.values()])
            assert mean[name] == pytest.approx(reference_mean, rel=1e-6), name


def test_ties_are_broken_by_docid_descending():
    qrels = {"q": {"a": 1}}
    per_query, _ = evaluate({"q": {"a": 1.0, "b": 1.0, "c": 1.0}}, qrels, ["mrr@10"])
    assert per_query["q"]["mrr@10"] == pytest.approx(1 / 3)


def test_missing_and_unjudged_queries():
    qrels = {"q1": {"a": 1}, "q2": {"a": 1}, "q3": {"a": 0}}
    run = {"q1": {"a": 1.0}, "q3": {"a": 1.0}, "other": {"a": 1.0}}
    per_query, mean = evaluate(run, qrels, ["success@1"])
    assert per_query == {
        "q1": {"success@1": 1.0},
        "q2": {"success@1": 0.0},
        "q3": {"success@1": 0.0},
    }
    assert mean["success@1"] == pytest.approx(1 / 3)


def test_parse_metrics_normalises_and_rejects_unknown():
    assert parse_metrics(" NDCG@10,recall@100,ndcg@10") == ["ndcg@10", "recall@100"]
    for bad in ("bleu@10", "ndcg", "ndcg@0", "ndcg@x", ""):
        with pytest.raises(DensekitError):
            parse_metrics(bad)


def test_relevance_threshold_must_be_positive():
    with pytest.raises(DensekitError, match="relevance_threshold"):
        evaluate({}, {"q": {"a": 1}}, ["p@1"], relevance_threshold=0)


def test_format_table_plain_and_markdown():
    rows = {
        "bm25": {"ndcg@10": 0.5, "seconds": 12.4},
        "dense model": {"ndcg@10": 0.25, "seconds": 3},
    }
    plain = format_table(rows, ["ndcg@10", "seconds"]).splitlines()
    assert plain[0].split() == ["system", "ndcg@10", "seconds"]
    assert plain[2].split() == ["bm25", "0.5000", "12"]
    assert plain[3] == "dense model   0.2500        3"
    markdown = format_table(rows, ["ndcg@10"], label="run", markdown=True).splitlines()
    assert markdown == [
        "| run | ndcg@10 |",
        "|---|---|",
        "| bm25 | 0.5000 |",
        "| dense model | 0.2500 |",
    ]
    table = format_table({"ndcg@10": {"v": 0.5}, "recall@100": {"v": 0.25}}, ["v"], label="metric")
    assert "ndcg@10     0.5000" in table and "recall@100  0.2500" in table
