"""Contrastive losses, in a registry so a name on the command line picks one.

Every loss sees the whole batch of vectors as one tensor each — ``q`` [n, d] and ``p``
[n * group, d], the passages of query i at rows ``i*group .. i*group+group-1`` with the
positive first — and never knows about processes: the trainer gathers before calling it.
A loss that scores other queries' passages may take ``false_negatives``, a boolean [n, n * group]
mask of passages judged relevant to a query that are not its target (:func:`false_negative_mask`);
those are left out of its softmax instead of being pushed down.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from densekit.errors import ConfigError

_REGISTRY: dict[str, type[RetrievalLoss]] = {}


def register(name: str) -> Callable[[type[RetrievalLoss]], type[RetrievalLoss]]:
    """Class decorator adding a loss under ``name``."""

    def add(cls: type[RetrievalLoss]) -> type[RetrievalLoss]:
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return add


class RetrievalLoss(nn.Module):
    """Base class: ``forward(q, p, teacher_scores=None) -> scalar``; ``masks_false_negatives``
    says whether ``forward`` also takes ``false_negatives=``."""

    name = "base"
    masks_false_negatives = False

    def __init__(self, temperature: float = 1.0, **_: object) -> None:
        super().__init__()
        self.temperature = temperature

    @staticmethod
    def available_losses() -> list[str]:
        return sorted(_REGISTRY)

    @staticmethod
    def describe() -> dict[str, str]:
        """Each registered loss and the first line of its docstring."""
        return {
            name: (_REGISTRY[name].__doc__ or "").strip().splitlines()[0]
            for name in sorted(_REGISTRY)
        }

    @staticmethod
    def create(name: str, **kwargs: object) -> RetrievalLoss:
        if name not in _REGISTRY:
            raise ConfigError(f"unknown loss {name!r}; available: {', '.join(sorted(_REGISTRY))}")
        return _REGISTRY[name](**kwargs)

    def forward(
        self, q: torch.Tensor, p: torch.Tensor, teacher_scores: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError


def group_targets(q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Row of each query's positive in ``p``, and the group size."""
    group = p.size(0) // q.size(0)
    return torch.arange(q.size(0), device=q.device) * group, group


def false_negative_mask(passage_ids: torch.Tensor, positive_ids: torch.Tensor) -> torch.Tensor:
    """``mask[i, j]``: passage j is one of query i's judged positives but not its target.

    ``passage_ids`` [n * group] and ``positive_ids`` [n, k] (padded with -1) are stable passage
    ids; each query's target is the first passage of its group.
    """
    n = positive_ids.size(0)
    mask = (positive_ids.unsqueeze(-1) == passage_ids.view(1, 1, -1)).any(dim=1)
    targets = torch.arange(n, device=mask.device) * (passage_ids.numel() // n)
    mask[torch.arange(n, device=mask.device), targets] = False
    return mask


@register("infonce")
class InfoNCELoss(RetrievalLoss):
    """Cross-entropy of each query over every passage of the batch, its positive the target.

    ``margin`` is subtracted from the positive's score before the temperature (additive
    margin, PaddleNLP); with ``use_inbatch_neg=False`` a query only sees its own group.
    ``symmetric`` adds the passage→query direction over the batch's positives.
    ``false_negatives`` entries are dropped from the softmax in both directions.
    """

    masks_false_negatives = True

    def __init__(
        self,
        temperature: float = 1.0,
        margin: float = 0.0,
        use_inbatch_neg: bool = True,
        symmetric: bool = False,
        **_: object,
    ) -> None:
        super().__init__(temperature)
        self.margin = margin
        self.use_inbatch_neg = use_inbatch_neg
        self.symmetric = symmetric

    def scores(self, q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (already divided by the temperature) and targets."""
        targets, group = group_targets(q, p)
        if self.use_inbatch_neg:
            scores = q @ p.T
        else:
            scores = torch.einsum("nd,ngd->ng", q, p.view(q.size(0), group, -1))
            targets = torch.zeros_like(targets)
        if self.margin:
            scores = scores - self.margin * F.one_hot(targets, scores.size(1)).to(scores.dtype)
        return scores / self.temperature, targets

    def forward(self, q, p, teacher_scores=None, false_negatives=None):
        scores, targets = self.scores(q, p)
        scores = scores.float()
        if false_negatives is not None:
            if not self.use_inbatch_neg:  # each query's own group only
                n = q.size(0)
                own = torch.arange(n, device=q.device)
                false_negatives = false_negatives.view(n, n, -1)[own, own]
            scores = scores.masked_fill(false_negatives, float("-inf"))
        loss = F.cross_entropy(scores, targets)
        if self.symmetric:
            rows = group_targets(q, p)[0]
            back = (p[rows] @ q.T / self.temperature).float()
            if false_negatives is not None and self.use_inbatch_neg:
                back = back.masked_fill(false_negatives[:, rows].T, float("-inf"))
            loss = (loss + F.cross_entropy(back, torch.arange(q.size(0), device=q.device))) / 2
        return loss


def _float_list(value: str | list[float] | tuple[float, ...]) -> list[float]:
    if isinstance(value, str):
        return [float(v) for v in value.split(",") if v.strip()]
    return [float(v) for v in value]


@register("distill")
class DistillationLoss(RetrievalLoss):
    """KL divergence from the teacher's softmax to the student's over each query's group.

    Teacher scores come from ``pos_scores``/``neg_scores`` (FlagEmbedding), softened by
    ``distil_temperature``; student scores are divided by the model temperature.
    """

    def __init__(self, temperature: float = 1.0, distil_temperature: float = 1.0, **_: object):
        super().__init__(temperature)
        self.distil_temperature = distil_temperature

    def forward(self, q, p, teacher_scores=None):
        if teacher_scores is None:
            raise ConfigError(
                f"loss {self.name} needs scores (pos_scores/neg_scores or graded labels) in every row"
            )
        group = p.size(0) // q.size(0)
        student = torch.einsum("nd,ngd->ng", q, p.view(q.size(0), group, -1)) / self.temperature
        teacher = F.softmax(teacher_scores.float() / self.distil_temperature, dim=-1)
        return F.kl_div(F.log_softmax(student.float(), dim=-1), teacher, reduction="batchmean")


@register("listwise")
class ListwiseLoss(DistillationLoss):
    """KL from the softmax of graded labels to the student's group softmax (multi-level data).

    The same computation as ``distill`` with the qrels labels (``MultiLevelDataset``) in place
    of a teacher's scores; ``distil_temperature`` sharpens or flattens the label distribution.
    """


@register("kl")
class KLLoss(RetrievalLoss):
    """Trove's ``kl``: KL from the softmax of each query's labels over the whole batch (zero
    for the other queries' passages) to the softmax of its in-batch scores / temperature.

    Unlike ``listwise`` (own group only), the other queries' passages take part with label 0,
    as in Trove's ``KLDivergenceLoss``.
    """

    def forward(self, q, p, teacher_scores=None):
        if teacher_scores is None:
            raise ConfigError(f"loss {self.name} needs graded labels or scores in every row")
        rows = teacher_scores.float().unbind(0)
        targets = torch.block_diag(*(row.unsqueeze(0) for row in rows))
        logits = (q @ p.T).float() / self.temperature
        return F.kl_div(
            F.log_softmax(logits, dim=-1),
            F.log_softmax(targets, dim=-1),
            log_target=True,
            reduction="batchmean",
        )


@register("matryoshka")
class MatryoshkaLoss(RetrievalLoss):
    """Any loss applied to leading slices of the vectors, weighted (Kusupati et al., 2022).

    Wraps another loss (InfoNCE by default; margin, distillation, listwise too), as
    sentence-transformers' ``MatryoshkaLoss`` does. Each prefix is renormalized when the model
    normalizes, as it is at search time. Dimensions above the vector size are skipped. Without
    ``weights`` every dimension weighs 1.
    """

    def __init__(
        self,
        base: RetrievalLoss | str = "infonce",
        dims: str | list[int] = "64,128,256,512,768",
        weights: str | list[float] | None = None,
        normalize: bool = False,
        **kwargs: object,
    ) -> None:
        base = RetrievalLoss.create(base, **kwargs) if isinstance(base, str) else base
        super().__init__(base.temperature)
        self.base = base
        self.dims = [int(d) for d in _float_list(dims)]
        self.weights = [1.0] * len(self.dims) if weights is None else _float_list(weights)
        if len(self.dims) != len(self.weights):
            raise ConfigError(
                f"--matryoshka_dims has {len(self.dims)} values but "
                f"--matryoshka_loss_weights has {len(self.weights)}"
            )
        self.normalize = normalize
        self.masks_false_negatives = base.masks_false_negatives

    def forward(self, q, p, teacher_scores=None, false_negatives=None):
        full = q.size(-1)
        terms = [(d, w) for d, w in zip(self.dims, self.weights, strict=True) if d <= full]
        if not terms:
            raise ConfigError(f"no --matryoshka_dims value fits the vector size {full}")
        total = q.new_zeros((), dtype=torch.float32)
        for dim, weight in terms:
            qd, pd = q[:, :dim], p[:, :dim]
            if self.normalize:
                qd, pd = F.normalize(qd, dim=-1), F.normalize(pd, dim=-1)
            extra = {"false_negatives": false_negatives} if false_negatives is not None else {}
            total = total + weight * self.base(qd, pd, teacher_scores, **extra)
        return total


def loss_from_args(model_args, settings) -> RetrievalLoss:
    """The registry loss a ``ModelArguments`` names (wrapped in Matryoshka when asked), at the
    encoder's temperature; shared by the command line and Trove's Python path."""
    loss = RetrievalLoss.create(
        model_args.loss or "infonce",
        temperature=settings.temperature,
        margin=model_args.margin,
        use_inbatch_neg=model_args.use_inbatch_neg,
        symmetric=model_args.symmetric_loss,
        distil_temperature=model_args.distil_temperature,
        normalize=settings.normalize,
    )
    if model_args.use_matryoshka and not isinstance(loss, MatryoshkaLoss):
        loss = MatryoshkaLoss(
            loss,
            dims=model_args.matryoshka_dims,
            weights=model_args.matryoshka_loss_weights,
            normalize=settings.normalize,
        )
    return loss


__all__ = [
    "DistillationLoss",
    "InfoNCELoss",
    "KLLoss",
    "ListwiseLoss",
    "MatryoshkaLoss",
    "RetrievalLoss",
    "false_negative_mask",
    "group_targets",
    "loss_from_args",
    "register",
]
