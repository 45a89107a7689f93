"""IR metrics during training (Trove's ``IRMetrics``): rank each eval query's group of passages
by the model's scores and measure nDCG, MRR and recall against the group's labels.

Use with ``RetrievalTrainingArguments(eval_strategy="steps", batch_eval_metrics=True)``: the
trainer then calls it batch by batch and once more with ``compute_result=True`` for the means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from transformers import EvalPrediction

from densekit.evaluation.metrics import evaluate


def _grade(label: float) -> int:
    """Graded qrels labels are integers; a fractional one means scores were passed as labels."""
    if float(label) != int(label):
        raise ValueError(
            f"IRMetrics got a non-integer label {label}: labels must be qrels grades, "
            "not teacher scores"
        )
    return int(label)


class IRMetrics:
    """``compute_metrics`` for the HF Trainer: nDCG@k, MRR@k and recall@k over eval groups."""

    def __init__(self, k_values: Sequence[int] = (10, 100), relevance_threshold: int = 1) -> None:
        self.metrics = [f"{name}@{k}" for k in k_values for name in ("ndcg", "mrr", "recall")]
        self.relevance_threshold = relevance_threshold
        self._per_query: list[dict[str, float]] = []

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Score one batch: ``scores`` and ``labels`` are [queries, group]."""
        scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
        run = {
            str(i): {str(j): float(s) for j, s in enumerate(row)} for i, row in enumerate(scores)
        }
        qrels = {
            str(i): {str(j): _grade(label) for j, label in enumerate(row)}
            for i, row in enumerate(labels)
        }
        per_query, _ = evaluate(run, qrels, self.metrics, self.relevance_threshold)
        self._per_query.extend(per_query.values())

    def __call__(self, eval_pred: EvalPrediction, compute_result: bool = True) -> dict[str, float]:
        self.add(eval_pred.predictions, eval_pred.label_ids)
        if not compute_result:
            return {}
        means = {m: float(np.mean([q[m] for q in self._per_query])) for m in self.metrics}
        self._per_query = []
        return means
