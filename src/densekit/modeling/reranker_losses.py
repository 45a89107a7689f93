"""Cross-encoder losses as pure functions of the group scores, registered by name.

Every loss takes ``scores`` [n, group] — the logits of query i's pairs in row i, the positive in
column 0 followed by the negatives (the order ``data.train_dataset.TrainDataset`` builds) — and,
for distillation, ``teacher`` [n, group] (FlagEmbedding's ``pos_scores``/``neg_scores``).
They are functions, not modules: a cross-encoder's loss has no state and no gathering across
processes (each pair is scored on its own; there are no in-batch negatives to share).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from densekit.errors import ConfigError


def listwise_ce(scores: torch.Tensor, teacher: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy over each group, the positive (column 0) as the target.

    FlagEmbedding's and Tevatron's reranker loss: ``-log softmax(scores)[:, 0]`` averaged.
    """
    target = torch.zeros(scores.size(0), dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores.float(), target)


def pointwise_bce(scores: torch.Tensor, teacher: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy per pair: the positive labelled 1, each negative 0 (mean over pairs).

    Scores become calibrated probabilities under a sigmoid, which suits thresholding.
    """
    labels = torch.zeros_like(scores, dtype=torch.float32)
    labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(scores.float(), labels)


def distill_kl(
    scores: torch.Tensor, teacher: torch.Tensor | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """KL(softmax(teacher/T) || softmax(student/T)) per group, times T² (Hinton et al.: keeps
    the gradient's size independent of T), averaged over groups."""
    if teacher is None:
        raise ConfigError(
            "--loss distill needs teacher scores: give pos_scores and neg_scores in every record"
        )
    if temperature <= 0:
        raise ConfigError(f"distillation temperature must be positive, got {temperature}")
    student = F.log_softmax(scores.float() / temperature, dim=-1)
    target = F.softmax(teacher.float().to(scores.device) / temperature, dim=-1)
    return F.kl_div(student, target, reduction="batchmean") * temperature**2


RERANKER_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "listwise": listwise_ce,
    "bce": pointwise_bce,
    "distill": distill_kl,
}
# peers' spellings: FlagEmbedding/Tevatron call the listwise loss cross-entropy
ALIASES = {"ce": "listwise", "cross_entropy": "listwise", "kl": "distill", "pointwise": "bce"}


def reranker_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss registered under ``name`` (or a peer's alias for it)."""
    key = ALIASES.get(name, name)
    if key not in RERANKER_LOSSES:
        raise ConfigError(
            f"unknown reranker loss {name!r}; available: {', '.join(RERANKER_LOSSES)}"
        )
    return RERANKER_LOSSES[key]


def needs_teacher(name: str) -> bool:
    """Whether the loss learns from teacher scores (the data must carry them)."""
    return ALIASES.get(name, name) == "distill"
