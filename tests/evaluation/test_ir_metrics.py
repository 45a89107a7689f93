"""IRMetrics ranks groups by score and counts graded labels; teacher scores are never labels."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import EvalPrediction

from densekit.evaluation.ir_metrics import IRMetrics


def test_graded_labels_are_counted_as_given():
    scores = np.array([[0.1, 0.9, 0.5]])
    labels = np.array([[2.0, 0.0, 1.0]])
    result = IRMetrics(k_values=[3])(EvalPrediction(scores, labels))
    # ranking: doc1 (0), doc2 (1), doc0 (2): first relevant at rank 2
    assert result["mrr@3"] == pytest.approx(0.5)
    dcg = 1 / np.log2(3) + 2 / np.log2(4)  # trec_eval: the grade is the gain
    ideal = 2 / np.log2(2) + 1 / np.log2(3)
    assert result["ndcg@3"] == pytest.approx(dcg / ideal)


def test_teacher_scores_passed_as_labels_are_refused():
    with pytest.raises(ValueError, match="teacher scores"):
        IRMetrics(k_values=[1])(EvalPrediction(np.array([[0.2, 0.1]]), np.array([[0.7, 0.4]])))
