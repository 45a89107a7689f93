"""Reranker losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from densekit.errors import ConfigError
from densekit.modeling.reranker_losses import (
    distill_kl,
    listwise_ce,
    pointwise_bce,
    reranker_loss,
)

SCORES = [[2.0, 1.0, 0.0], [0.5, 1.5, -1.0]]


def test_listwise_loss_and_gradient_by_hand():
    scores = torch.tensor(SCORES, requires_grad=True)
    loss = listwise_ce(scores)
    loss.backward()
    expected, grads = 0.0, []
    for row in SCORES:
        z = sum(math.exp(s) for s in row)
        expected += (-row[0] + math.log(z)) / len(SCORES)
        # d/ds_j of mean(-s_0 + logsumexp s) = (softmax_j - [j == 0]) / n
        grads.append([(math.exp(s) / z - (j == 0)) / len(SCORES) for j, s in enumerate(row)])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(scores.grad, torch.tensor(grads), rtol=1e-5, atol=1e-7)


def test_pointwise_bce_by_hand():
    scores = torch.tensor(SCORES)
    expected = 0.0
    for row in SCORES:
        for j, s in enumerate(row):
            p = 1 / (1 + math.exp(-s))
            expected -= math.log(p) if j == 0 else math.log(1 - p)
    assert pointwise_bce(scores).item() == pytest.approx(expected / 6, rel=1e-6)


def test_distill_kl_by_hand_and_zero_on_agreement():
    student = torch.tensor(SCORES)
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    temperature = 2.0
    expected = 0.0
    for s_row, t_row in zip(SCORES, teacher.tolist(), strict=True):
        t = [math.exp(v / temperature) for v in t_row]
        s = [math.exp(v / temperature) for v in s_row]
        pt = [v / sum(t) for v in t]
        ps = [v / sum(s) for v in s]
        expected += sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True))
    expected = expected / 2 * temperature**2
    got = distill_kl(student, teacher, temperature=temperature).item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert distill_kl(student, student).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="teacher"):
        distill_kl(student, None)


def test_registry_names_and_aliases():
    assert reranker_loss("listwise") is listwise_ce
    assert reranker_loss("ce") is listwise_ce
    assert reranker_loss("bce") is pointwise_bce
    with pytest.raises(ConfigError, match="available"):
        reranker_loss("margin")
