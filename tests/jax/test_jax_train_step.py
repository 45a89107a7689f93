"""One JAX training step against the torch path: the same loss and the same updated weights
(densekit's torch encoder and loss registry), and optax AdamW against the HF Trainer's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from densekit.arguments import RetrievalTrainingArguments
from densekit.data.collator import tokenize
from densekit.jax.data import fixed_arrays
from densekit.modeling import losses as torch_losses
from densekit.modeling.encoder import DenseEncoder

QUERIES = [f"query {i} about topic {i % 3} and more words" for i in range(4)]
PASSAGES = [f"passage {j} for query {i} " * (1 + j) for i in range(4) for j in range(3)]
MODEL_ARGS = SimpleNamespace(
    loss="infonce",
    margin=0.1,
    use_inbatch_neg=True,
    symmetric_loss=False,
    distil_temperature=1.0,
    use_matryoshka=True,
    matryoshka_dims="16,32",
    matryoshka_loss_weights="1,0.5",
)
SETTINGS = {"pooling": "mean", "normalize": True, "temperature": 0.05}


def test_sgd_step_matches_torch(jax_cpu, tiny_model, tokenizer):
    """Loss and every updated weight of one SGD step (dropout off), Matryoshka + InfoNCE with
    temperature and margin, equal torch's. Crosses torch's CPU kernels (ATen/oneDNN) with XLA's
    through a BERT forward and backward, so both are compared relative to their magnitude: the
    loss to 1e-5, each weight tensor to 1e-4 of its largest entry (lr=2 amplifies gradient ulps)."""
    import jax
    import optax

    from densekit.jax.encoder import JaxEncoder
    from densekit.jax.losses import loss_from_args
    from densekit.jax.sharding import DataParallel
    from densekit.jax.train_step import StepBuilder, TrainState
    from densekit.jax.weights import state_from_params

    queries = tokenize(tokenizer, QUERIES, 16, pad_to_multiple_of=16)
    passages = tokenize(tokenizer, PASSAGES, 32, pad_to_multiple_of=32)
    lr = 2.0  # large, so the weights move by clearly more than the tolerance
    model = DenseEncoder.from_pretrained(tiny_model, **SETTINGS).eval()
    loss = torch_losses.loss_from_args(MODEL_ARGS, model.settings)(
        model.encode(dict(queries), True), model.encode(dict(passages), False)
    )
    loss.backward()
    with torch.no_grad():
        for weight in model.parameters():
            if weight.grad is not None:  # BERT's pooler takes no part
                weight -= lr * weight.grad
    expected = {k: v.numpy() for k, v in model.query_model.state_dict().items()}

    encoder = JaxEncoder.from_pretrained(tiny_model, **SETTINGS)
    placement, tx = DataParallel(), optax.sgd(lr)
    step = StepBuilder(
        encoder.vectors, loss_from_args(MODEL_ARGS, encoder.settings), tx, placement, dropout=False
    ).jitted()
    state, value = step(
        placement.replicate(TrainState.create(encoder.params, tx)),
        placement.global_batch(fixed_arrays(queries, 16)),
        placement.global_batch(fixed_arrays(passages, 32)),
    )
    assert float(value) == pytest.approx(loss.item(), rel=1e-5)
    got = state_from_params(encoder.towers["query"], jax.device_get(state.params["query"]))
    assert len(got) == len(expected) - 2  # all but BERT's unused pooler
    for name, value in got.items():
        scale = max(1.0, np.abs(expected[name]).max())
        np.testing.assert_allclose(value, expected[name], atol=1e-4 * scale, err_msg=name)
    before = state_from_params(encoder.towers["query"], encoder.params["query"])
    assert max(np.abs(got[n] - before[n]).max() for n in got) > 1e-2


def _hf_named_parameters(tiny_model: str):
    from transformers import BertModel, Trainer

    model = BertModel.from_pretrained(tiny_model)
    decay = set(Trainer.get_decay_parameter_names(None, model))
    named = {n: p for n, p in model.named_parameters() if not n.startswith("pooler.")}
    return named, decay


@pytest.mark.parametrize("accumulation", [1, 2])
def test_adamw_matches_the_hf_trainer(jax_cpu, tiny_model, tmp_path, accumulation):
    """optax AdamW (decay mask, clipping, linear warmup/decay, accumulation) on given gradients
    equals torch AdamW with the HF Trainer's parameter groups and schedule. Crosses XLA's and
    torch's elementwise CPU kernels only (no matmul): 1e-6 of each tensor's largest entry."""
    import jax
    from transformers import get_linear_schedule_with_warmup

    from densekit.jax.train_step import TrainState, make_optimizer
    from densekit.jax.weights import params_from_state, read_tower, state_from_params

    updates = 3
    args = RetrievalTrainingArguments(
        output_dir=str(tmp_path),
        learning_rate=0.01,
        weight_decay=0.1,
        warmup_steps=1,
        max_grad_norm=0.05,
        gradient_accumulation_steps=accumulation,
        max_steps=updates,
    )
    named, decay = _hf_named_parameters(tiny_model)
    groups = [
        {"params": [p for n, p in named.items() if n in decay], "weight_decay": 0.1},
        {"params": [p for n, p in named.items() if n not in decay], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    schedule = get_linear_schedule_with_warmup(optimizer, 1, updates)
    tower = read_tower(tiny_model)
    tx = make_optimizer(args, updates)
    state = TrainState.create(tower.params, tx)
    update = jax.jit(tx.update)
    rng = np.random.default_rng(0)
    for _ in range(updates):
        micro = [
            {n: rng.normal(scale=0.1, size=p.shape).astype(np.float32) for n, p in named.items()}
            for _ in range(accumulation)
        ]
        for grads in micro:
            changes, opt_state = update(
                params_from_state(tower, grads), state.opt_state, state.params
            )
            state = TrainState(
                state.step + 1, jax.tree.map(np.add, state.params, changes), opt_state
            )
        for n, p in named.items():
            p.grad = torch.tensor(np.mean([g[n] for g in micro], axis=0))
        torch.nn.utils.clip_grad_norm_(list(named.values()), 0.05)
        optimizer.step()
        schedule.step()
    got = state_from_params(tower, jax.device_get(state.params))
    start = state_from_params(tower, tower.params)
    for name, weight in named.items():
        want = weight.detach().numpy()
        atol = 1e-6 * max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got[name], want, atol=atol, err_msg=name)
    assert max(np.abs(got[n] - start[n]).max() for n in got) > 5e-3
