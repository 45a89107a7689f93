"""Losses against hand computations written with explicit loops and math.exp/log."""

from __future__ import annotations

import math

import pytest
import torch

from densekit.errors import ConfigError
from densekit.modeling.losses import (
    DistillationLoss,
    InfoNCELoss,
    MatryoshkaLoss,
    RetrievalLoss,
)

N, GROUP, DIM, TEMP = 2, 3, 4, 0.05


@pytest.fixture
def qp():
    generator = torch.Generator().manual_seed(0)
    q = torch.rand(N, DIM, generator=generator, dtype=torch.float64) - 0.5
    p = torch.rand(N * GROUP, DIM, generator=generator, dtype=torch.float64) - 0.5
    return q, p


def _dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b, strict=True))


def _unit(v):
    norm = math.sqrt(sum(float(x) ** 2 for x in v))
    return [float(x) / norm for x in v]


def _cross_entropy(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(s) for s in logits))


def _infonce_by_hand(q, p, temp, margin=0.0, inbatch=True, symmetric=False):
    q, p = [list(map(float, r)) for r in q], [list(map(float, r)) for r in p]
    n, group = len(q), len(p) // len(q)
    total = 0.0
    for i in range(n):
        candidates = range(len(p)) if inbatch else range(i * group, (i + 1) * group)
        positive = i * group
        logits, target = [], None
        for k, j in enumerate(candidates):
            score = _dot(q[i], p[j])
            if j == positive:
                score -= margin
                target = k
            logits.append(score / temp)
        total += _cross_entropy(logits, target)
    loss = total / n
    if symmetric:
        back = 0.0
        for i in range(n):
            logits = [_dot(p[i * group], q[k]) / temp for k in range(n)]
            back += _cross_entropy(logits, i)
        loss = (loss + back / n) / 2
    return loss


def test_registry():
    names = RetrievalLoss.available_losses()
    assert {"infonce", "matryoshka", "distill"} <= set(names)
    assert isinstance(RetrievalLoss.create("infonce", temperature=0.1), InfoNCELoss)
    with pytest.raises(ConfigError, match="unknown loss 'nope'"):
        RetrievalLoss.create("nope")


def test_infonce_by_hand(qp):
    q, p = qp
    loss = InfoNCELoss(temperature=TEMP)(q, p)
    assert loss.item() == pytest.approx(_infonce_by_hand(q, p, TEMP), rel=1e-6)


def test_infonce_margin(qp):
    q, p = qp
    loss = InfoNCELoss(temperature=TEMP, margin=0.2)(q, p)
    expected = _infonce_by_hand(q, p, TEMP, margin=0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected > _infonce_by_hand(q, p, TEMP)


def test_infonce_without_inbatch_negatives(qp):
    q, p = qp
    loss = InfoNCELoss(temperature=TEMP, use_inbatch_neg=False)(q, p)
    assert loss.item() == pytest.approx(_infonce_by_hand(q, p, TEMP, inbatch=False), rel=1e-6)
    with_margin = InfoNCELoss(temperature=TEMP, use_inbatch_neg=False, margin=0.1)(q, p)
    expected = _infonce_by_hand(q, p, TEMP, inbatch=False, margin=0.1)
    assert with_margin.item() == pytest.approx(expected, rel=1e-6)


def test_infonce_symmetric(qp):
    q, p = qp
    loss = InfoNCELoss(temperature=TEMP, symmetric=True)(q, p)
    assert loss.item() == pytest.approx(_infonce_by_hand(q, p, TEMP, symmetric=True), rel=1e-6)


def test_infonce_gradient_flows(qp):
    q, p = (t.clone().requires_grad_(True) for t in qp)
    InfoNCELoss(temperature=TEMP)(q, p).backward()
    assert q.grad.abs().sum() > 0 and p.grad.abs().sum() > 0


def test_matryoshka_weighted_sum_over_renormalized_prefixes(qp):
    q, p = qp
    loss = MatryoshkaLoss(dims="2,4,8", weights="1,0.5,3", normalize=True, temperature=TEMP)
    expected = 0.0
    for dim, weight in ((2, 1.0), (4, 0.5)):  # 8 > DIM: skipped
        qd = [_unit(row[:dim]) for row in q.tolist()]
        pd = [_unit(row[:dim]) for row in p.tolist()]
        expected += weight * _infonce_by_hand(qd, pd, TEMP)
    assert loss(q, p).item() == pytest.approx(expected, rel=1e-6)


def test_matryoshka_without_normalization_uses_raw_prefixes(qp):
    q, p = qp
    loss = MatryoshkaLoss(dims=[3], weights=[2.0], normalize=False, temperature=TEMP)
    expected = 2.0 * _infonce_by_hand(
        [r[:3] for r in q.tolist()], [r[:3] for r in p.tolist()], TEMP
    )
    assert loss(q, p).item() == pytest.approx(expected, rel=1e-6)


def test_matryoshka_bad_configs(qp):
    with pytest.raises(ConfigError, match="matryoshka_loss_weights"):
        MatryoshkaLoss(dims="2,4", weights="1")
    with pytest.raises(ConfigError, match="no --matryoshka_dims"):
        MatryoshkaLoss(dims="64", weights="1")(*qp)


TEACHER = [[3.0, 1.0, -2.0], [0.5, 0.4, 0.1]]


def _distill_by_hand(q, p, teacher, temp, distil_temp):
    expected = 0.0
    for i in range(len(q)):
        student = [_dot(q[i], p[i * GROUP + j]) / temp for j in range(GROUP)]
        log_z = math.log(sum(math.exp(s) for s in student))
        t_exp = [math.exp(t / distil_temp) for t in teacher[i]]
        t_prob = [t / sum(t_exp) for t in t_exp]
        for j in range(GROUP):
            expected += t_prob[j] * (math.log(t_prob[j]) - (student[j] - log_z))
    return expected / len(q)


def test_distill_kl_by_hand(qp):
    q, p = qp
    teacher = torch.tensor(TEACHER, dtype=torch.float64)
    loss = DistillationLoss(temperature=TEMP, distil_temperature=2.0)(q, p, teacher)
    expected = _distill_by_hand(q.tolist(), p.tolist(), TEACHER, TEMP, 2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def _prefixes(rows, dim, normalize):
    return [_unit(r[:dim]) if normalize else r[:dim] for r in rows]


def test_matryoshka_wraps_margin_infonce(qp):
    q, p = qp
    base = RetrievalLoss.create("infonce", temperature=TEMP, margin=0.3)
    loss = MatryoshkaLoss(base, dims="2,3", weights="2,1", normalize=True)
    expected = sum(
        w
        * _infonce_by_hand(
            _prefixes(q.tolist(), d, True), _prefixes(p.tolist(), d, True), TEMP, margin=0.3
        )
        for d, w in ((2, 2.0), (3, 1.0))
    )
    assert loss(q, p).item() == pytest.approx(expected, rel=1e-6)


def test_matryoshka_wraps_distillation_with_equal_default_weights(qp):
    q, p = qp
    teacher = torch.tensor(TEACHER, dtype=torch.float64)
    loss = MatryoshkaLoss(
        DistillationLoss(temperature=TEMP, distil_temperature=2.0), dims=[2, 4], normalize=False
    )
    assert loss.weights == [1.0, 1.0]
    expected = sum(
        _distill_by_hand(
            _prefixes(q.tolist(), d, False), _prefixes(p.tolist(), d, False), TEACHER, TEMP, 2.0
        )
        for d in (2, 4)
    )
    assert loss(q, p, teacher).item() == pytest.approx(expected, rel=1e-5)


def test_matryoshka_by_name_wraps_the_named_base():
    loss = RetrievalLoss.create("matryoshka", base="distill", dims="2", temperature=0.5)
    assert isinstance(loss.base, DistillationLoss) and loss.base.temperature == 0.5


def test_distill_needs_teacher_scores(qp):
    with pytest.raises(ConfigError, match="pos_scores"):
        DistillationLoss()(*qp)


def test_trove_kl_by_hand(qp):
    """Trove's ``kl``: labels spread over the whole batch (0 for other queries' passages)."""
    q, p = qp
    labels = torch.tensor(TEACHER, dtype=torch.float64)
    loss = RetrievalLoss.create("kl", temperature=TEMP)
    n, group = len(TEACHER), len(TEACHER[0])
    total = 0.0
    for i in range(n):
        logits = [sum(a * b for a, b in zip(q[i].tolist(), row, strict=True)) / TEMP for row in p.tolist()]  # fmt: skip
        target = [0.0] * (n * group)
        target[i * group : (i + 1) * group] = TEACHER[i]
        log_s = [x - math.log(sum(math.exp(v) for v in logits)) for x in logits]
        log_t = [x - math.log(sum(math.exp(v) for v in target)) for x in target]
        total += sum(math.exp(t) * (t - s) for t, s in zip(log_t, log_s, strict=True))
    assert loss(q, p, labels).item() == pytest.approx(total / n, rel=1e-5)
    with pytest.raises(ConfigError, match="labels"):
        loss(q, p)
