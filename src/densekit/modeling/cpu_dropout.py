"""Dropout on CPU from a fast random source, for training.

torch's CPU dropout draws every mask element from its Mersenne Twister (``bernoulli_``, about
8 ns an element on 2 cores). A BERT attention dropout mask has batch x heads x length^2
elements (50M for 64 passages of 256 tokens), so on a bf16 MiniLM step that drawing alone was a
quarter of the step. Here masks come from numpy's PCG64, 32 bits an element, seeded from
torch's CPU generator, so ``torch.manual_seed`` and GradCache's random-state replay reproduce
them exactly. Same distribution (an element is dropped with probability ``p`` to 2^-32), same
1/(1-p) scaling, same gradients given the mask. CUDA tensors keep torch's own kernels.

:func:`install` swaps a model's ``nn.Dropout`` modules for :class:`Dropout` and, for attention
that goes through transformers' ``AttentionInterface`` with SDPA, registers :func:`attention`:
SDPA itself when not training on CPU, otherwise softmax attention with the fast mask (SDPA's CPU
kernels have no fused dropout, so training ran its unfused fallback anyway).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

ATTENTION = "densekit_cpu_dropout"
_SEED_BOUND = 2**63 - 1


def drop_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A bool tensor, True where an element is dropped (probability ``p`` each).

    The seed is one draw from torch's default CPU generator, so the mask follows torch's
    random state."""
    seed = int(torch.randint(0, _SEED_BOUND, (1,)))
    n = math.prod(shape)
    bits = np.random.PCG64(seed).random_raw((n + 1) // 2).view(np.uint32)[:n]
    keep_below = np.uint32(min(round((1.0 - p) * 2**32), 2**32 - 1))
    return torch.from_numpy(bits >= keep_below).view(tuple(shape))


class _MaskedScale(torch.autograd.Function):
    """``x`` with the masked elements zeroed, times ``scale``; the same in the backward.

    ``own_grad``: the incoming gradient is a fresh tensor no other node reads (true of a
    matmul's input gradient), so it is masked in place instead of copied: at attention size
    every new tensor costs its page faults."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, drop: torch.Tensor, scale: float, own_grad: bool = False
    ) -> torch.Tensor:
        ctx.save_for_backward(drop)
        ctx.scale, ctx.own_grad = scale, own_grad
        out = x.masked_fill(drop, 0)
        return out.mul_(scale) if scale != 1.0 else out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (drop,) = ctx.saved_tensors
        out = grad.masked_fill_(drop, 0) if ctx.own_grad else grad.masked_fill(drop, 0)
        return (out.mul_(ctx.scale) if ctx.scale != 1.0 else out), None, None, None


class _KeyMask(torch.autograd.Function):
    """Scores of masked keys set to the dtype's minimum, in place; the gradient passes through.

    Softmax gives those keys probability exactly 0, so its backward already gives them gradient
    exactly 0 and masking it again (a copy at attention size) changes nothing. Every query row
    keeps at least one key (padding masks keys only)."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        ctx.mark_dirty(scores)
        return scores.masked_fill_(masked, torch.finfo(scores.dtype).min)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout`` with the fast mask for CPU tensors."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return nn.functional.dropout(x, p, training=True)
    return _MaskedScale.apply(x, drop_mask(x.shape, p), 1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` drawing its CPU masks with :func:`drop_mask` (no state: saves as before)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout(input, self.p, self.training)


def attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: SDPA, except while training on CPU with dropout.

    There: softmax(q k^T * scaling + mask) with the fast dropout mask, times v. The mask is
    SDPA's (boolean, True = attend, or additive). The 1/(1-p) scale is applied to the output,
    which is smaller than the probabilities it would otherwise scale."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    fast = (
        module.training
        and dropout > 0.0
        and query.device.type == "cpu"
        and not getattr(module, "is_causal", False)
        and not kwargs.get("is_causal")
        and key.shape[1] == query.shape[1]  # no grouped key/value heads
        and kwargs.get("position_bias") is None
    )
    if not fast:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query * scaling, key.transpose(-1, -2))
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = _KeyMask.apply(scores, ~attention_mask)
        else:
            scores = scores + attention_mask
    with torch.autocast("cpu", enabled=False):  # the kernel accumulates in fp32 for bf16 too
        probs = torch.softmax(scores, dim=-1)
    probs = _MaskedScale.apply(probs, drop_mask(probs.shape, dropout), 1.0, True)
    out = torch.matmul(probs, value) * (1.0 / (1.0 - dropout))
    return out.transpose(1, 2).contiguous(), None


def _register() -> bool:
    """Register :func:`attention` and SDPA's mask builder under :data:`ATTENTION` (False when
    this transformers has no attention interface)."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    except ImportError:
        return False
    AttentionInterface.register(ATTENTION, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
    return True


def install(model: nn.Module) -> nn.Module:
    """Use the fast CPU dropout in ``model``'s dropout modules and SDPA attention (in place).

    Attention is switched only for transformers models running SDPA whose attention layers
    read the implementation from the interface; any other stays as it was."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p, child.inplace))
    for sub in model.modules():
        config = getattr(sub, "config", None)
        setter = getattr(sub, "set_attn_implementation", None)
        if config is None or setter is None or config._attn_implementation != "sdpa":
            continue
        if _register():
            setter(ATTENTION)
    return model
