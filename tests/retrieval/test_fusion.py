"""Run fusion against hand-computed numbers, and weight tuning against a planted best mix.

The two runs below have a tie inside run A (d2, d3), documents missing from one run (d2, d4
from B; d5 from A), a query only A has (q2) and one only B has (q3).
"""

from __future__ import annotations

import math

import pytest

from densekit.errors import ConfigError, DataError
from densekit.evaluation.fusion_tuning import simplex_grid, tune_weights
from densekit.retrieval.fusion import fuse, normalise_scores, rrf, weighted

A = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 2.0, "d4": 1.0}, "q2": {"x1": 5.0, "x2": 1.0}}
B = {"q1": {"d3": 0.75, "d5": 0.5, "d1": 0.25}, "q3": {"y1": 4.0, "y2": 2.0}}


def _check(fused, expected):
    """Same queries, same documents in the same order, same scores."""
    assert list(fused.run) == list(expected)
    for qid, docs in expected.items():
        assert list(fused.run[qid]) == list(docs), qid
        assert fused.run[qid] == pytest.approx(docs), qid
    assert fused.missing == [1, 1]  # A lacks q3, B lacks q2


def test_rrf_k60_ranks_ties_by_docid_and_missing_docs_add_nothing():
    # A ranks d1 1, d2 2, d3 3 (tie with d2 broken by docid), d4 4; B ranks d3 1, d5 2, d1 3.
    # d1 = 1/61 + 1/63 = d3 exactly, d2 = 1/62 = d5: both ties go to the smaller docid.
    expected = {
        "q1": {
            "d1": 1 / 61 + 1 / 63,
            "d3": 1 / 61 + 1 / 63,
            "d2": 1 / 62,
            "d5": 1 / 62,
            "d4": 1 / 64,
        },
        "q2": {"x1": 1 / 61, "x2": 1 / 62},
        "q3": {"y1": 1 / 61, "y2": 1 / 62},
    }
    fused = rrf([A, B])
    _check(fused, expected)
    assert fused.run["q1"]["d1"] == fused.run["q1"]["d3"]  # exact tie, whatever the run order
    assert rrf([B, A]).run == fused.run


def test_rrf_k_parameter_and_depth():
    fused = rrf([A, B], k=0, depth=3)
    assert fused.run["q1"] == pytest.approx({"d1": 1 + 1 / 3, "d3": 1 / 3 + 1, "d2": 1 / 2})
    assert list(fused.run["q1"]) == ["d1", "d3", "d2"]
    assert fused.run["q2"] == pytest.approx({"x1": 1.0, "x2": 0.5})


def test_weighted_minmax_equal_weights():
    # A q1 minmax: d1 1, d2 .5, d3 .5, d4 0; B q1: d3 1, d5 .5, d1 0; floors 0.
    expected = {
        "q1": {"d3": 0.75, "d1": 0.5, "d2": 0.25, "d5": 0.25, "d4": 0.0},
        "q2": {"x1": 0.5, "x2": 0.0},
        "q3": {"y1": 0.5, "y2": 0.0},
    }
    _check(weighted([A, B], [0.5, 0.5]), expected)
    _check(weighted([A, B]), expected)  # no weights: equal weights


def test_weighted_minmax_uneven_weights():
    # d1 .25*1, d2 .25*.5, d3 .25*.5 + .75*1, d4 0, d5 .75*.5
    expected = {
        "q1": {"d3": 0.875, "d5": 0.375, "d1": 0.25, "d2": 0.125, "d4": 0.0},
        "q2": {"x1": 0.25, "x2": 0.0},
        "q3": {"y1": 0.75, "y2": 0.0},
    }
    _check(weighted([A, B], [0.25, 0.75], "minmax"), expected)


def test_weighted_zscore_missing_doc_gets_the_runs_lowest_z():
    # A q1: mean 2, std sqrt(.5): d1 +sqrt2, d2 0, d3 0, d4 -sqrt2 (floor).
    # B q1: mean .5, std sqrt(1/24): d3 +sqrt1.5, d5 0, d1 -sqrt1.5 (floor).
    r2, r15 = math.sqrt(2), math.sqrt(1.5)
    expected = {
        "q1": {
            "d3": r15 / 2,
            "d1": r2 / 2 - r15 / 2,
            "d2": -r15 / 2,
            "d5": -r2 / 2,
            "d4": -r2 / 2 - r15 / 2,
        },
        "q2": {"x1": 0.5, "x2": -0.5},
        "q3": {"y1": 0.5, "y2": -0.5},
    }
    _check(weighted([A, B], [0.5, 0.5], "zscore"), expected)


def test_weighted_none_uses_raw_scores_and_raw_floors():
    # floors: A q1 1.0, B q1 0.25; a run without the query adds 0.
    expected = {
        "q1": {"d1": 1.625, "d3": 1.375, "d2": 1.125, "d5": 0.75, "d4": 0.625},
        "q2": {"x1": 2.5, "x2": 0.5},
        "q3": {"y1": 2.0, "y2": 1.0},
    }
    _check(weighted([A, B], [0.5, 0.5], "none", depth=5), expected)


def test_depth_cut_and_dispatcher():
    fused = fuse([A, B], "weighted", weights=[0.5, 0.5], depth=2)
    assert fused.run["q1"] == {"d3": 0.75, "d1": 0.5}
    assert fuse([A, B]).run == rrf([A, B]).run


def test_equal_scores_normalise_to_zero():
    assert normalise_scores({"a": 2.0, "b": 2.0}, "minmax") == {"a": 0.0, "b": 0.0}
    assert normalise_scores({"a": 2.0}, "zscore") == {"a": 0.0}
    assert normalise_scores({"a": 2.0, "b": 1.0}, "none") == {"a": 2.0, "b": 1.0}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: weighted([A, B], [1.0]), "1 weights given for 2 runs"),
        (lambda: weighted([A, B], [0.5, -0.5]), "must not be negative"),
        (lambda: weighted([A, B], [0.0, 0.0]), "all zero"),
        (lambda: weighted([A, B], [1.0, math.nan]), "finite"),
        (lambda: weighted([A, B], normalize="l2"), "unknown normalisation 'l2'"),
        (lambda: fuse([A, B], "combsum"), "unknown fusion method 'combsum'"),
        (lambda: fuse([A, B], "rrf", weights=[1, 1]), "rrf has none"),
        (lambda: rrf([A, B], k=-1), "k must be"),
        (lambda: rrf([A]), "at least two runs"),
        (lambda: rrf([A, B], depth=0), "depth must be positive"),
        (lambda: simplex_grid(2, 0.3), "must divide 1"),
        (lambda: simplex_grid(2, 0), "must divide 1"),
    ],
)
def test_bad_options_are_one_config_error(call, message):
    with pytest.raises(ConfigError, match=message) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_infinite_score_is_a_data_error_naming_the_run():
    with pytest.raises(DataError, match="run 2: query 'q1'"):
        weighted([A, {"q1": {"d1": math.inf, "d2": 0.0}}])


def test_simplex_grid_covers_the_simplex():
    two = simplex_grid(2, 0.1)
    assert two == [(i / 10, (10 - i) / 10) for i in range(11)]
    three = simplex_grid(3, 0.5)
    assert three == [
        (0.0, 0.0, 1.0), (0.0, 0.5, 0.5), (0.0, 1.0, 0.0),
        (0.5, 0.0, 0.5), (0.5, 0.5, 0.0), (1.0, 0.0, 0.0),
    ]  # fmt: skip
    fine = simplex_grid(3, 0.1)
    assert len(fine) == len(set(fine)) == math.comb(10 + 2, 2)  # 66 points
    assert all(math.isclose(sum(w), 1.0) and min(w) >= 0 for w in fine)
    assert len(simplex_grid(2, 0.05)) == 21


def _planted():
    """Two queries whose relevant doc r wins only for A's weight in (0.25, 0.35).

    q1: r has A 1 and B 2/3 (minmax), c has A 0 and B 1: r wins iff w_A > 0.25.
    q2: r has A 0 and B 1, c has A 1 and B 6/13: r wins iff w_A < 0.35.
    So mrr@10 is 1 at w = (0.3, 0.7) and 0.75 at the other points of the 0.1 grid, but at
    w = (1, 0): there q2's r (A's lowest, 0) ties z (A's floor, 0), and evaluate ranks ties by
    docid descending like trec_eval, so r is third (mrr 1/3, mean 2/3).
    """
    run_a = {"q1": {"r": 1.0, "c": 0.0}, "q2": {"c": 1.0, "r": 0.0}}
    run_b = {"q1": {"c": 3.0, "r": 2.0, "z": 0.0}, "q2": {"r": 13.0, "c": 6.0, "z": 0.0}}
    qrels = {"q1": {"r": 1}, "q2": {"r": 1}}
    return run_a, run_b, qrels


def test_tuning_finds_the_planted_weights():
    run_a, run_b, qrels = _planted()
    tuning = tune_weights([run_a, run_b], qrels, "mrr@10", step=0.1)
    assert tuning.metric == "mrr@10"
    assert tuning.weights == (0.3, 0.7)
    assert tuning.value == 1.0
    assert [point["weights"] for point in tuning.grid] == [list(w) for w in simplex_grid(2, 0.1)]
    values = {tuple(point["weights"]): point["value"] for point in tuning.grid}
    assert values.pop((0.3, 0.7)) == 1.0
    assert values.pop((1.0, 0.0)) == pytest.approx(2 / 3)
    assert set(values.values()) == {0.75}
    assert tuning.as_dict()["best"] == {"weights": [0.3, 0.7], "value": 1.0}


def test_tuning_ties_keep_the_first_grid_point_and_coarse_grids_miss_the_plant():
    run_a, run_b, qrels = _planted()
    tuning = tune_weights([run_a, run_b], qrels, "mrr@10", step=0.5)
    assert tuning.weights == (0.0, 1.0)  # (0, 1) and (0.5, 0.5) both score 0.75
    assert [p["value"] for p in tuning.grid] == pytest.approx([0.75, 0.75, 2 / 3])


def test_tuning_refuses_bad_metric_and_unjudged_runs():
    run_a, run_b, qrels = _planted()
    with pytest.raises(ConfigError, match="one metric"):
        tune_weights([run_a, run_b], qrels, "mrr@10,p@1")
    with pytest.raises(ConfigError, match="no query of the runs is judged"):
        tune_weights([run_a, run_b], {"other": {"r": 1}}, "mrr@10")
