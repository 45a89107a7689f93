"""GradCache gives the gradient of the full-batch loss, dropout included.

The reference computes every chunk's vectors *with* a graph in the same order (so dropout draws
the same masks), concatenates them, and back-propagates the full-batch loss once. GradCache
computes the same vectors without a graph, caches d loss / d vector, and replays each chunk:
if the random state were not restored, dropout would differ and the gradients with it.
"""

from __future__ import annotations

import pytest
import torch

from densekit.arguments import RetrievalTrainingArguments
from densekit.data.collator import RetrievalCollator
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.modeling.losses import RetrievalLoss
from densekit.training.grad_cache import split_batch
from densekit.training.trainer import RetrievalTrainer


def _batch(tiny_model, queries=8, group=3):
    items = [
        {
            "query": f"question {i} about subject {i % 3}",
            "passages": [f"passage {j} for question {i} " * (1 + j % 3) for j in range(group)],
        }
        for i in range(queries)
    ]
    return RetrievalCollator(load_tokenizer(tiny_model), 16, 32)(items)


def _reference_grads(encoder, batch, loss_fn, q_chunk, p_chunk, seed):
    torch.manual_seed(seed)
    encoder.train()
    encoder.zero_grad()
    q = torch.cat([encoder.encode_query(c) for c in split_batch(batch["query"], q_chunk)])
    p = torch.cat([encoder.encode_passage(c) for c in split_batch(batch["passage"], p_chunk)])
    loss_fn(q, p).backward()
    return {n: t.grad.clone() for n, t in encoder.named_parameters() if t.grad is not None}


@pytest.mark.parametrize(
    ("untie", "loss_name"), [(False, "infonce"), (True, "infonce"), (False, "matryoshka")]
)
def test_grad_cache_equals_full_batch_gradient(tiny_model, tmp_path, untie, loss_name):
    """GradCache (chunked forwards, cached vector gradients) against one full-batch backward:
    torch both ways, but other matmul shapes and summation orders, so each gradient tensor is
    compared to 1e-4 relatively and 1e-5 of its largest entry, the loss to 1e-5 relatively."""
    encoder = DenseEncoder.from_pretrained(
        tiny_model, pooling="mean", normalize=True, untie_encoder=untie, temperature=0.1
    )
    dropouts = [m for m in encoder.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    assert dropouts, "the tiny model must have dropout on for this test to mean anything"
    loss_fn = RetrievalLoss.create(
        loss_name, temperature=0.1, dims="8,16,32", weights="1,0.5,0.25", normalize=True
    )
    batch = _batch(tiny_model)
    expected = _reference_grads(encoder, batch, loss_fn, 3, 5, seed=7)

    args = RetrievalTrainingArguments(
        output_dir=str(tmp_path),
        grad_cache=True,
        gc_q_chunk_size=3,
        gc_p_chunk_size=5,
        per_device_train_batch_size=8,
        report_to=[],
    )
    trainer = RetrievalTrainer(model=encoder, args=args, loss_fn=loss_fn)
    encoder.zero_grad()
    torch.manual_seed(7)
    loss = trainer.training_step(encoder, batch)
    got = {n: t.grad for n, t in encoder.named_parameters() if t.grad is not None}
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        atol = 1e-5 * max(1.0, grad.abs().max().item())
        torch.testing.assert_close(got[name], grad, atol=atol, rtol=1e-4, msg=name)
    torch.manual_seed(7)
    with torch.no_grad():
        q = torch.cat([encoder.encode_query(c) for c in split_batch(batch["query"], 3)])
        p = torch.cat([encoder.encode_passage(c) for c in split_batch(batch["passage"], 5)])
    assert loss.item() == pytest.approx(loss_fn(q, p).item(), rel=1e-5)


def test_grad_cache_without_restored_random_state_would_differ(tiny_model, tmp_path):
    """Guards the test above: plain re-encoding (new dropout masks) gives other gradients."""
    encoder = DenseEncoder.from_pretrained(tiny_model, pooling="mean", normalize=True)
    loss_fn = RetrievalLoss.create("infonce", temperature=0.1)
    batch = _batch(tiny_model)
    first = _reference_grads(encoder, batch, loss_fn, 3, 5, seed=7)
    second = _reference_grads(encoder, batch, loss_fn, 3, 5, seed=8)
    differs = any(not torch.allclose(first[n], second[n], atol=1e-5) for n in first)
    assert differs


def test_grad_cache_with_gradient_accumulation_scales_like_the_trainer(tiny_model, tmp_path):
    """GradCache (chunks of 1 and 2) against the plain HF step, torch both ways (other shapes,
    other summation orders): 1e-5 relatively and 1e-6 of each gradient's largest entry."""
    encoder = DenseEncoder.from_pretrained(tiny_model, pooling="cls")
    encoder.eval()  # no dropout: compare against the plain HF step directly
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batch = _batch(tiny_model, queries=4)
    grads = []
    for grad_cache in (False, True):
        args = RetrievalTrainingArguments(
            output_dir=str(tmp_path / str(grad_cache)),
            grad_cache=grad_cache,
            gc_q_chunk_size=1,
            gc_p_chunk_size=2,
            gradient_accumulation_steps=4,
            report_to=[],
        )
        trainer = RetrievalTrainer(model=encoder, args=args)
        trainer.current_gradient_accumulation_steps = 4
        encoder.zero_grad()
        trainer.training_step(encoder, batch)
        grads.append(
            {n: t.grad.clone() for n, t in encoder.named_parameters() if t.grad is not None}
        )
    for name in grads[0]:
        want = grads[0][name]
        atol = 1e-6 * max(1.0, want.abs().max().item())
        torch.testing.assert_close(grads[1][name], want, atol=atol, rtol=1e-5)


def test_grad_cache_and_plain_step_mask_false_negatives(tiny_model, tmp_path):
    """With passage ids in the batch the trainer leaves each query's other judged positives out
    of its negatives: the plain step and GradCache both give the gradient of the masked
    full-batch loss (computed here from the same vectors with an explicit mask), which differs
    from the unmasked one."""
    from densekit.modeling.losses import false_negative_mask

    encoder = DenseEncoder.from_pretrained(tiny_model, pooling="mean", normalize=True)
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batch = _batch(tiny_model, queries=4, group=2)
    # query 0's positives include query 2's positive (row 4); query 3's include row 1
    batch["passage_ids"] = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    batch["positive_ids"] = torch.tensor([[0, 4], [2, -1], [4, -1], [6, 1]])
    mask = false_negative_mask(batch["passage_ids"], batch["positive_ids"])
    assert mask.sum() == 2
    loss_fn = RetrievalLoss.create("infonce", temperature=0.1)
    masked_loss = lambda q, p: loss_fn(q, p, false_negatives=mask)  # noqa: E731
    expected = _reference_grads(encoder, batch, masked_loss, 4, 8, seed=0)
    unmasked = _reference_grads(encoder, batch, loss_fn, 4, 8, seed=0)
    assert any(not torch.allclose(expected[n], unmasked[n], atol=1e-6) for n in expected)
    for grad_cache in (False, True):
        args = RetrievalTrainingArguments(
            output_dir=str(tmp_path / str(grad_cache)),
            grad_cache=grad_cache,
            gc_q_chunk_size=2,
            gc_p_chunk_size=3,
            report_to=[],
        )
        trainer = RetrievalTrainer(model=encoder, args=args, loss_fn=loss_fn)
        encoder.zero_grad()
        trainer.training_step(encoder, dict(batch))
        _assert_grads(encoder, expected)
    args = RetrievalTrainingArguments(
        output_dir=str(tmp_path / "off"), mask_false_negatives=False, report_to=[]
    )
    trainer = RetrievalTrainer(model=encoder, args=args, loss_fn=loss_fn)
    encoder.zero_grad()
    trainer.training_step(encoder, dict(batch))
    _assert_grads(encoder, unmasked)


def _assert_grads(encoder, expected) -> None:
    """Each parameter's gradient to 1e-4 relatively and 1e-5 of its largest entry."""
    for name, want in expected.items():
        got = dict(encoder.named_parameters())[name].grad
        atol = 1e-5 * max(1.0, want.abs().max().item())
        torch.testing.assert_close(got, want, atol=atol, rtol=1e-4, msg=name)
