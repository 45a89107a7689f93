"""Mixed precision through GradCache on CUDA, against an independent full-batch fp32 gradient.

The reference is a copy of the same encoder, run in fp32 on the whole batch at once (no
chunks, no GradCache), so it shares no code path with what it checks. Dropout is off in these
models (fp16 and fp32 dropout kernels need not draw the same masks); GradCache's replay of the
CUDA random state is checked separately in fp32, with dropout on.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from gpu_support import grad_errors, record, total_rel_err, train_items

from densekit.arguments import RetrievalTrainingArguments
from densekit.data.collator import RetrievalCollator
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.modeling.losses import RetrievalLoss
from densekit.training.grad_cache import split_batch
from densekit.training.trainer import RetrievalTrainer

pytestmark = pytest.mark.gpu

TEMPERATURE = 0.05
# ‖g − g_fp32‖ / ‖g_fp32‖ over all tensors, and per tensor (small tensors are noisier).
TOLERANCE = {"fp16": (1e-2, 5e-2), "bf16": (5e-2, 1.5e-1), "fp32": (1e-4, 1e-3)}


def _batch(model_dir: str, queries: int = 8, group: int = 3) -> dict:
    items = train_items(queries, group)
    return RetrievalCollator(load_tokenizer(model_dir), 16, 32)(items)


def _cuda(batch: dict) -> dict:
    return {side: {k: v.cuda() for k, v in part.items()} for side, part in batch.items()}


def _encoder(model_dir: str) -> DenseEncoder:
    return DenseEncoder.from_pretrained(
        model_dir, pooling="mean", normalize=True, temperature=TEMPERATURE
    )


def _loss_fn() -> RetrievalLoss:
    return RetrievalLoss.create("infonce", temperature=TEMPERATURE)


def _grads(module: torch.nn.Module, scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {
        n: p.grad.detach().float() / scale
        for n, p in module.named_parameters()
        if p.grad is not None
    }


def full_batch_fp32(encoder: DenseEncoder, batch: dict) -> tuple[float, dict]:
    """The reference: fp32, the whole batch in one forward, one backward."""
    encoder.cuda().train()
    encoder.zero_grad(set_to_none=True)
    batch = _cuda(batch)
    loss = _loss_fn()(
        encoder.encode_query(batch["query"]), encoder.encode_passage(batch["passage"])
    )
    loss.backward()
    return loss.item(), _grads(encoder)


def prepared_trainer(encoder: DenseEncoder, out, **kwargs):
    """A RetrievalTrainer whose model and optimizer went through the accelerator as in
    ``Trainer.train()`` (autocast and, for fp16, the GradScaler), ready for ``training_step``."""
    args = RetrievalTrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=8,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        **kwargs,
    )
    trainer = RetrievalTrainer(model=encoder, args=args, loss_fn=_loss_fn())
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    model, trainer.optimizer = trainer.accelerator.prepare(trainer.model, trainer.optimizer)
    trainer.model_wrapped = model
    trainer.current_gradient_accumulation_steps = 1
    return trainer, model


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_grad_cache_equals_full_batch_fp32_gradient(
    tiny_bert_dir, tmp_path, precision
):
    encoder = _encoder(tiny_bert_dir)
    batch = _batch(tiny_bert_dir)
    ref_loss, ref = full_batch_fp32(copy.deepcopy(encoder), batch)

    flags = {"fp16": True} if precision == "fp16" else {"bf16": True}
    trainer, model = prepared_trainer(
        encoder, tmp_path, grad_cache=True, gc_q_chunk_size=3, gc_p_chunk_size=5, **flags
    )
    scaler = trainer.accelerator.scaler
    if precision == "fp16":
        assert scaler is not None, "fp16 must train with a GradScaler"
    else:
        assert scaler is None, "bf16 needs no loss scaling"
    if precision == "bf16":
        assert trainer.args.bf16 and not trainer.args.fp16
    else:
        assert trainer.args.fp16 and not trainer.args.bf16

    halvings = 0
    for _ in range(12):  # an overflowing first scale is halved, as the Trainer's skipped step does
        model.zero_grad(set_to_none=True)
        loss = trainer.training_step(model, batch)
        scale = scaler.get_scale() if scaler is not None else 1.0
        got = _grads(encoder, scale)
        if all(torch.isfinite(g).all() for g in got.values()):
            break
        scaler.update(scale / 2)
        halvings += 1
    else:
        pytest.fail("the gradients never became finite")

    assert got.keys() == ref.keys()
    errors = grad_errors(got, ref)
    total = total_rel_err(got, ref)
    worst = max(errors, key=errors.get)
    loss_err = abs(loss.item() - ref_loss) / abs(ref_loss)
    record(
        f"grad_cache_{precision}_vs_fp32",
        total_rel_err=total,
        worst_tensor=worst,
        worst_rel_err=errors[worst],
        loss_rel_err=loss_err,
        scale=scale,
        halvings=halvings,
    )
    total_tol, tensor_tol = TOLERANCE[precision]
    assert total <= total_tol, f"{precision}: ‖Δg‖/‖g‖ = {total:.2e} > {total_tol}"
    assert errors[worst] <= tensor_tol, f"{precision}: {worst} {errors[worst]:.2e}"
    assert loss_err <= total_tol


def test_fp16_overflow_step_is_skipped_as_the_trainer_does(tiny_bert_dir, tmp_path):
    """One parameter's gradient is made infinite in the first step (a tensor hook): the
    GradScaler must skip that optimizer step (no weight moves), halve its scale, and the
    Trainer must not advance the LR schedule; the next steps train normally."""
    from transformers import TrainerCallback

    encoder = _encoder(tiny_bert_dir)
    args = RetrievalTrainingArguments(
        output_dir=str(tmp_path),
        fp16=True,
        grad_cache=True,
        gc_q_chunk_size=3,
        gc_p_chunk_size=5,
        per_device_train_batch_size=8,
        max_steps=3,
        learning_rate=1e-3,
        lr_scheduler_type="linear",
        logging_steps=1,
        report_to=[],
        save_strategy="no",
    )
    collator = RetrievalCollator(load_tokenizer(tiny_bert_dir), 16, 32)
    poison = {"on": False}
    watched = encoder.query_model.embeddings.word_embeddings.weight
    watched.register_hook(lambda g: g * math.inf if poison["on"] else g)
    steps: list[dict] = []

    class Watch(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            poison["on"] = state.global_step == 0
            self.before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
            self.scale = trainer.accelerator.scaler.get_scale()
            self.sched = trainer.lr_scheduler.last_epoch

        def on_step_end(self, args, state, control, **kwargs):
            moved = [n for n, p in encoder.named_parameters() if not torch.equal(p, self.before[n])]
            steps.append(
                {
                    "step": state.global_step,
                    "skipped": trainer.accelerator.optimizer_step_was_skipped,
                    "moved": len(moved),
                    "scale_before": self.scale,
                    "scale_after": trainer.accelerator.scaler.get_scale(),
                    "scheduler_advanced": trainer.lr_scheduler.last_epoch - self.sched,
                }
            )

    trainer = RetrievalTrainer(
        model=encoder,
        args=args,
        train_dataset=train_items(16, 3),
        data_collator=collator,
        loss_fn=_loss_fn(),
        callbacks=[Watch()],
    )
    trainer.train()
    record("fp16_overflow_skip", steps=steps)
    assert len(steps) == 3
    first = steps[0]
    assert first["skipped"], steps
    assert first["moved"] == 0, "a skipped step must not move any weight"
    assert first["scale_after"] == pytest.approx(first["scale_before"] / 2)
    assert first["scheduler_advanced"] == 0, "the Trainer steps the schedule only after a real step"
    for later in steps[1:]:
        if later["skipped"]:
            assert later["moved"] == 0 and later["scheduler_advanced"] == 0
        else:
            assert later["moved"] > 0 and later["scheduler_advanced"] == 1
    assert any(not s["skipped"] for s in steps[1:]), "training never resumed after the overflow"
    for p in encoder.parameters():
        assert torch.isfinite(p).all()


def test_grad_cache_replays_cuda_dropout(tiny_bert_dropout_dir, tmp_path):
    """fp32 with dropout on: GradCache restores the CUDA generator for each chunk's second
    forward, so it equals the graph-carrying chunked forward run with the same seed."""
    encoder = _encoder(tiny_bert_dropout_dir)
    batch = _batch(tiny_bert_dropout_dir)

    def reference(seed: int) -> dict:
        ref = copy.deepcopy(encoder).cuda().train()
        cuda = _cuda(batch)
        torch.manual_seed(seed)
        q = torch.cat([ref.encode_query(c) for c in split_batch(cuda["query"], 3)])
        p = torch.cat([ref.encode_passage(c) for c in split_batch(cuda["passage"], 5)])
        _loss_fn()(q, p).backward()
        return _grads(ref)

    expected, other_seed = reference(7), reference(8)
    trainer, model = prepared_trainer(
        encoder, tmp_path, precision="fp32", grad_cache=True, gc_q_chunk_size=3, gc_p_chunk_size=5
    )
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    trainer.training_step(model, batch)
    got = _grads(encoder)
    total = total_rel_err(got, expected)
    control = total_rel_err(other_seed, expected)
    record("grad_cache_cuda_dropout_replay", total_rel_err=total, other_seed_rel_err=control)
    assert control > 1e-2, "dropout must change the gradient for this test to mean anything"
    assert total <= TOLERANCE["fp32"][0], f"‖Δg‖/‖g‖ = {total:.2e}"
