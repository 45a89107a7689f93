"""Pooling token states into one vector, correct under left and right padding."""

from __future__ import annotations

import torch

POOLING_MODES = ("cls", "mean", "last")


def first_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first attended token per row (0 under right padding)."""
    return mask.long().argmax(dim=1)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended token per row (length-1 under right padding)."""
    return mask.size(1) - 1 - mask.long().flip(dims=[1]).argmax(dim=1)


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool ``hidden`` [batch, seq, dim] with ``mask`` [batch, seq] by ``mode``.

    ``cls`` takes the first real token and ``last`` the last real token, wherever padding sits,
    so decoder models padded on the left and encoders padded on the right both work.
    """
    rows = torch.arange(hidden.size(0), device=hidden.device)
    if mode == "cls":
        return hidden[rows, first_token_index(mask)]
    if mode == "last":
        return hidden[rows, last_token_index(mask)]
    if mode == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    raise ValueError(f"unknown pooling {mode!r}; expected one of {POOLING_MODES}")
