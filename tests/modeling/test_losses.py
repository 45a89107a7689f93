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


def _masked_infonce(q, p, masked: set[tuple[int, int]], symmetric=False) -> float:
    """InfoNCE by loops, entries ``(query, passage)`` in ``masked`` left out of each softmax."""
    n, group = len(q), len(p) // len(q)
    total = 0.0
    for i in range(n):
        kept = [j for j in range(len(p)) if (i, j) not in masked]
        logits = [_dot(q[i], p[j]) / TEMP for j in kept]
        total += _cross_entropy(logits, kept.index(i * group))
    loss = total / n
    if not symmetric:
        return loss
    back = 0.0
    for i in range(n):
        kept = [j for j in range(n) if (j, i * group) not in masked]
        logits = [_dot(p[i * group], q[j]) / TEMP for j in kept]
        back += _cross_entropy(logits, kept.index(i))
    return (loss + back / n) / 2


def test_false_negative_mask_against_sets():
    """The mask marks passage j for query i iff j's id is among i's positives and j is not
    i's target (the first of its group): checked against plain set membership."""
    from densekit.modeling.losses import false_negative_mask

    group = 3
    passage_ids = [10, 11, 12, 20, 10, 22, 30, 31, 20]  # 10 and 20 appear twice
    positives = [[10, 20], [20], [30, 10, 99]]
    width = max(map(len, positives))
    padded = torch.tensor([row + [-1] * (width - len(row)) for row in positives])
    mask = false_negative_mask(torch.tensor(passage_ids), padded)
    for i, row in enumerate(positives):
        for j, pid in enumerate(passage_ids):
            want = pid in row and j != i * group
            assert bool(mask[i, j]) == want, (i, j)


@pytest.mark.parametrize("symmetric", [False, True])
def test_infonce_leaves_false_negatives_out(qp, symmetric):
    """Masked entries are dropped from both softmaxes (hand loop); an all-False mask changes
    nothing; the gradient w.r.t. a masked passage's vector gets no push from that query."""
    q, p = qp
    masked = {(0, 3), (1, 1)}  # query 0: query 1's positive; query 1: a passage of group 0
    mask = torch.zeros(N, N * GROUP, dtype=torch.bool)
    for i, j in masked:
        mask[i, j] = True
    loss = InfoNCELoss(temperature=TEMP, symmetric=symmetric)
    got = loss(q, p, false_negatives=mask).item()
    want = _masked_infonce(q.tolist(), p.tolist(), masked, symmetric)
    assert got == pytest.approx(want, rel=1e-6)  # the loss is taken in float32
    plain = loss(q, p).item()
    assert loss(q, p, false_negatives=torch.zeros_like(mask)).item() == pytest.approx(plain)
    assert abs(got - plain) > 1e-6 * abs(plain)


def test_infonce_mask_within_own_group_only():
    """Without in-batch negatives only the mask's own-group entries count."""
    generator = torch.Generator().manual_seed(3)
    q = torch.rand(N, DIM, generator=generator, dtype=torch.float64)
    p = torch.rand(N * GROUP, DIM, generator=generator, dtype=torch.float64)
    mask = torch.zeros(N, N * GROUP, dtype=torch.bool)
    mask[0, 1] = True  # own group of query 0
    mask[1, 2] = True  # another query's group: irrelevant without in-batch negatives
    loss = InfoNCELoss(temperature=TEMP, use_inbatch_neg=False)
    got = loss(q, p, false_negatives=mask).item()
    want = 0.0
    for i in range(N):
        kept = [j for j in range(i * GROUP, (i + 1) * GROUP) if not (i == 0 and j == 1)]
        logits = [_dot(q[i].tolist(), p[j].tolist()) / TEMP for j in kept]
        want += _cross_entropy(logits, 0)
    assert got == pytest.approx(want / N, rel=1e-6)


def test_matryoshka_passes_the_mask_to_its_base(qp):
    q, p = qp
    mask = torch.zeros(N, N * GROUP, dtype=torch.bool)
    mask[0, 4] = True
    wrapped = MatryoshkaLoss("infonce", dims="2,4", weights="1,1", temperature=TEMP)
    base = InfoNCELoss(temperature=TEMP)
    want = base(q[:, :2], p[:, :2], false_negatives=mask) + base(q, p, false_negatives=mask)
    assert wrapped.masks_false_negatives
    assert wrapped(q, p, false_negatives=mask).item() == pytest.approx(want.item(), rel=1e-6)
