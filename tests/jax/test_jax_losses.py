"""The jnp losses equal the torch loss registry's on the same vectors (values and gradients)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from densekit.errors import ConfigError
from densekit.modeling import losses as torch_losses
from densekit.modeling.config import EncoderConfig


def _args(**kwargs) -> SimpleNamespace:
    base = {
        "loss": "infonce",
        "margin": 0.0,
        "use_inbatch_neg": True,
        "symmetric_loss": False,
        "distil_temperature": 1.0,
        "use_matryoshka": False,
        "matryoshka_dims": "8,16,64",
        "matryoshka_loss_weights": None,
    }
    return SimpleNamespace(**{**base, **kwargs})


CASES = [
    ({}, EncoderConfig(temperature=1.0)),
    ({"margin": 0.3, "symmetric_loss": True}, EncoderConfig(normalize=True, temperature=0.05)),
    ({"use_inbatch_neg": False}, EncoderConfig(temperature=0.2)),
    (
        {"use_matryoshka": True, "matryoshka_loss_weights": "1,0.5,2"},
        EncoderConfig(normalize=True, temperature=0.05),
    ),
    ({"loss": "matryoshka", "matryoshka_dims": "4,16"}, EncoderConfig(temperature=0.1)),
]


@pytest.mark.parametrize(("flags", "settings"), CASES)
def test_loss_and_gradients_match_torch(jax_cpu, flags, settings):
    """Crosses torch's CPU kernels (ATen matmul/log-softmax, oneDNN/MKL per CPU) with XLA's CPU
    kernels: float32 results agree to a few ulps of their magnitude (losses reach ~90 and
    gradients ~14 at temperature 0.05-0.1), so tolerances are relative, 1e-5 of the magnitude."""
    import jax
    import jax.numpy as jnp

    from densekit.jax.losses import loss_from_args

    rng = np.random.default_rng(0)
    q, p = rng.normal(size=(4, 16)), rng.normal(size=(12, 16))  # 4 queries, groups of 3
    if settings.normalize:
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        p /= np.linalg.norm(p, axis=1, keepdims=True)
    q, p = q.astype(np.float32), p.astype(np.float32)
    args = _args(**flags)
    if args.loss == "matryoshka":  # the torch registry's matryoshka takes dims only this way
        torch_loss = torch_losses.MatryoshkaLoss(
            dims=args.matryoshka_dims, temperature=settings.temperature
        )
    else:
        torch_loss = torch_losses.loss_from_args(args, settings)
    tq, tp = torch.tensor(q, requires_grad=True), torch.tensor(p, requires_grad=True)
    expected = torch_loss(tq, tp)
    expected.backward()
    value, (gq, gp) = jax.value_and_grad(loss_from_args(args, settings), argnums=(0, 1))(
        jnp.asarray(q), jnp.asarray(p)
    )
    assert float(value) == pytest.approx(expected.item(), rel=1e-5)
    for got, want in ((gq, tq.grad.numpy()), (gp, tp.grad.numpy())):
        # Scaled by the largest gradient: elementwise rtol would fail on near-zero entries.
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5 * max(1, np.abs(want).max()))


def test_losses_without_a_jax_form_are_refused():
    from densekit.jax.losses import loss_from_args

    with pytest.raises(ConfigError, match="--loss distill is not on the JAX path"):
        loss_from_args(_args(loss="distill"), EncoderConfig())
    with pytest.raises(ConfigError, match="has 3 values but"):
        loss_from_args(_args(use_matryoshka=True, matryoshka_loss_weights="1,2"), EncoderConfig())
