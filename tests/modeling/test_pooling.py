"""pool(): cls/mean/last equal a manual loop over each row's real tokens, under either padding."""

from __future__ import annotations

import pytest
import torch

from densekit.modeling.pooling import pool

LENGTHS = [5, 1, 7, 3]
SEQ, DIM = 7, 6


def _padded(real: list[torch.Tensor], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Place each row's real states in a [batch, SEQ, DIM] tensor padded with garbage."""
    hidden = torch.randn(len(real), SEQ, DIM) * 100  # padding positions hold large noise
    mask = torch.zeros(len(real), SEQ, dtype=torch.long)
    for i, states in enumerate(real):
        n = states.size(0)
        span = slice(0, n) if side == "right" else slice(SEQ - n, SEQ)
        hidden[i, span] = states
        mask[i, span] = 1
    return hidden, mask


def _manual(real: list[torch.Tensor], mode: str) -> torch.Tensor:
    out = []
    for states in real:
        if mode == "cls":
            out.append(states[0])
        elif mode == "last":
            out.append(states[states.size(0) - 1])
        else:
            total = torch.zeros(DIM)
            for token in states:
                total = total + token
            out.append(total / states.size(0))
    return torch.stack(out)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mode", ["cls", "mean", "last"])
def test_pool_matches_manual_loop(side, mode):
    generator = torch.Generator().manual_seed(0)
    real = [torch.randn(n, DIM, generator=generator) for n in LENGTHS]
    hidden, mask = _padded(real, side)
    torch.testing.assert_close(pool(hidden, mask, mode), _manual(real, mode))


@pytest.mark.parametrize("mode", ["cls", "mean", "last"])
def test_pool_same_under_left_and_right_padding(mode):
    real = [torch.randn(n, DIM) for n in LENGTHS]
    right = pool(*_padded(real, "right"), mode)
    left = pool(*_padded(real, "left"), mode)
    torch.testing.assert_close(right, left)


def test_pool_bfloat16_mask_and_bool_mask():
    """bf16 pooling (torch's bf16 CPU kernels, which differ by CPU: native AVX512_BF16 or not)
    against an fp32 loop: bf16 keeps ~3 significant digits, hence rtol 2e-2 (atol for ~0)."""
    real = [torch.randn(n, DIM) for n in LENGTHS]
    hidden, mask = _padded(real, "right")
    torch.testing.assert_close(pool(hidden, mask.bool(), "mean"), _manual(real, "mean"))
    out = pool(hidden.bfloat16(), mask, "mean")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), _manual(real, "mean"), atol=0.05, rtol=0.02)


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(torch.zeros(1, 2, 3), torch.ones(1, 2), "max")
