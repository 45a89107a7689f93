"""The recipe's tables: significance marks read off the pairwise comparisons."""

from __future__ import annotations

from densekit.evaluation.significance import Comparison
from densekit.recipes.results import beats, format_results


def _row(baseline: str, run: str, difference: float, holm_p: float) -> Comparison:
    return Comparison(run, "ndcg@10", 0.5, 0.5 + difference, difference, 0.01, 0.01, holm_p,
                      baseline=baseline)  # fmt: skip


def test_beats_lists_significant_winners_in_either_direction():
    rows = [
        _row("bm25", "dense", 0.05, 0.01),  # dense beats bm25
        _row("bm25", "hybrid", 0.09, 0.20),  # not significant after Holm
        _row("dense", "hybrid", -0.04, 0.03),  # the earlier system wins
    ]
    assert beats(rows) == {"dense": ["bm25", "hybrid"]}


def test_table_has_a_marks_column_per_row():
    results = {
        name: {"ndcg@10": v, "mrr@10": v, "recall@100": v, "seconds": 1.0}
        for name, v in (("bm25", 0.5), ("dense", 0.6))
    }
    table = format_results(results, [_row("bm25", "dense", 0.1, 0.001)]).splitlines()
    assert table[0].endswith("beats (nDCG@10, Holm p < 0.05) |")
    assert table[2].endswith("| - |") and table[3].endswith("| bm25 |")
    assert all(line.count("|") == table[0].count("|") for line in table)
