"""The fast CPU dropout: its masks' distribution and replay, its values and gradients, and a
BERT with it installed against transformers' eager BERT given the same masks."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from transformers import BertModel

from densekit.modeling import cpu_dropout
from densekit.modeling.factory import build_encoder
from densekit.training.reranker_trainer import RerankerRun, build_model


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_mask_rate_and_replay(p):
    torch.manual_seed(3)
    mask = cpu_dropout.drop_mask((1000, 1000), p)
    n = mask.numel()
    sigma = math.sqrt(p * (1 - p) / n)
    assert mask.dtype == torch.bool and mask.shape == (1000, 1000)
    assert abs(mask.float().mean().item() - p) < 6 * sigma
    # rows and columns carry no pattern: per-row rates spread like a binomial's
    rows = mask.float().mean(1)
    assert abs(rows.std().item() - math.sqrt(p * (1 - p) / 1000)) < 0.2 * math.sqrt(p / 1000)
    torch.manual_seed(3)
    assert torch.equal(cpu_dropout.drop_mask((1000, 1000), p), mask)
    assert not torch.equal(cpu_dropout.drop_mask((1000, 1000), p), mask)  # the stream moved on
    state = torch.get_rng_state()
    first = cpu_dropout.drop_mask((7, 9), p)
    torch.set_rng_state(state)
    assert torch.equal(cpu_dropout.drop_mask((7, 9), p), first)


def test_dropout_values_and_gradient():
    torch.manual_seed(0)
    x = torch.randn(64, 33, requires_grad=True)
    grad = torch.randn(64, 33)
    state = torch.get_rng_state()
    y = cpu_dropout.dropout(x, 0.25)
    y.backward(grad)
    torch.set_rng_state(state)
    drop = cpu_dropout.drop_mask(x.shape, 0.25)
    assert drop.any() and not drop.all()
    expected = torch.where(drop, torch.zeros(()), x.detach() / 0.75)
    torch.testing.assert_close(y.detach(), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(
        x.grad, torch.where(drop, torch.zeros(()), grad / 0.75), rtol=1e-6, atol=0
    )
    assert cpu_dropout.dropout(x, 0.25, training=False) is x
    assert cpu_dropout.dropout(x, 0.0) is x


def _attention_inputs(dtype=torch.float64):
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 6, 4, dtype=dtype, requires_grad=True) for _ in range(3))
    keep = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    keep[1, :, :, 4:] = False  # the second sequence has 2 padding keys
    return q, k, v, keep


def test_attention_while_training_equals_the_hand_computation():
    q, k, v, keep = _attention_inputs()
    module = nn.Module().train()
    state = torch.get_rng_state()
    out, _ = cpu_dropout.attention(module, q, k, v, keep, dropout=0.2, scaling=0.5)
    upstream = torch.randn_like(out)
    got = torch.autograd.grad((out * upstream).sum(), (q, k, v))
    torch.set_rng_state(state)
    drop = cpu_dropout.drop_mask((2, 3, 6, 6), 0.2)
    scores = (q @ k.transpose(-1, -2) * 0.5).masked_fill(~keep, -math.inf)
    probs = scores.softmax(-1).masked_fill(drop, 0) / 0.8
    ref = (probs @ v).transpose(1, 2)
    want = torch.autograd.grad((ref * upstream).sum(), (q, k, v))
    assert rel(out, ref) < 1e-12
    for a, b in zip(got, want, strict=True):
        assert rel(a, b) < 1e-12


def test_attention_outside_training_is_sdpa():
    q, k, v, keep = _attention_inputs(torch.float32)
    ref = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2)
    for module in (nn.Module().eval(), nn.Module().train()):  # callers pass 0 outside training
        out, _ = cpu_dropout.attention(module, q, k, v, keep, dropout=0.0, scaling=None)
        assert rel(out, ref) < 1e-6


def _loss_and_grads(model: BertModel, ids, mask, weights, seed: int):
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    loss = (hidden * weights * mask[..., None]).sum()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_installed_bert_equals_eager_bert_given_the_same_masks(tiny_model, monkeypatch):
    """transformers' eager BERT, its every dropout drawing :func:`drop_mask` in call order, is the
    oracle: same loss and gradients in training mode, same outputs in eval mode."""
    reference = BertModel.from_pretrained(tiny_model, add_pooling_layer=False)  # dropout 0.1, 0.1
    assert reference.config.attention_probs_dropout_prob > 0 < reference.config.hidden_dropout_prob
    reference.set_attn_implementation("eager")
    fast = copy.deepcopy(reference)
    fast.set_attn_implementation("sdpa")
    cpu_dropout.install(fast)
    assert fast.config._attn_implementation == cpu_dropout.ATTENTION
    assert not any(type(m) is nn.Dropout for m in fast.modules())

    torch.manual_seed(5)
    ids = torch.randint(1, 50, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    weights = torch.randn(3, 9, 32)

    loss, grads = _loss_and_grads(fast, ids, mask, weights, seed=11)
    loss_again, _ = _loss_and_grads(fast, ids, mask, weights, seed=11)
    loss_other, _ = _loss_and_grads(fast, ids, mask, weights, seed=12)
    assert loss_again == loss and abs(loss_other - loss) > 1e-3 * abs(loss)

    def masked_dropout(x, p=0.5, training=True, inplace=False):
        if not training or p == 0.0:
            return x
        return x.masked_fill(cpu_dropout.drop_mask(x.shape, p), 0) / (1 - p)

    monkeypatch.setattr(nn.functional, "dropout", masked_dropout)
    ref_loss, ref_grads = _loss_and_grads(reference, ids, mask, weights, seed=11)
    monkeypatch.undo()
    assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss)
    total = math.sqrt(sum(g.norm() ** 2 for g in ref_grads.values()))
    diff = math.sqrt(sum((grads[n] - g).norm() ** 2 for n, g in ref_grads.items()))
    assert diff <= 1e-5 * total

    fast.eval()
    reference.eval()
    with torch.no_grad():
        a = fast(input_ids=ids, attention_mask=mask).last_hidden_state
        b = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    assert rel(a * mask[..., None], b * mask[..., None]) < 1e-5


def test_the_models_to_train_draw_fast_cpu_dropout(tiny_model, tmp_path):
    encoder = build_encoder(tiny_model)
    run = RerankerRun(model_name_or_path=tiny_model, dataset_path="-", output_dir=str(tmp_path))
    reranker = build_model(run)
    for model, backbone in ((encoder, encoder.query_model), (reranker, reranker.model)):
        assert backbone.config._attn_implementation == cpu_dropout.ATTENTION
        dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        assert dropouts and all(type(m) is cpu_dropout.Dropout for m in dropouts)
