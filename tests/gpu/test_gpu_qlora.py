"""4-bit QLoRA (``--load_in_4bit --lora``) on a tiny decoder: the base is really quantized and
frozen, only the adapters train, and 20 steps bring the loss down."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from gpu_support import record, train_items

from densekit.arguments import RetrievalTrainingArguments
from densekit.data.collator import RetrievalCollator
from densekit.modeling.encoder import load_tokenizer
from densekit.modeling.factory import build_encoder
from densekit.modeling.losses import RetrievalLoss
from densekit.training.trainer import RetrievalTrainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        importlib.util.find_spec("bitsandbytes") is None,
        reason="needs bitsandbytes (bash bench/gpu_wheels.sh carries it to the GPU machine)",
    ),
]


def test_qlora_trains_20_steps_with_falling_loss(tiny_decoder_dir, tmp_path):
    import bitsandbytes as bnb

    folder = tiny_decoder_dir("qwen2")
    encoder = build_encoder(
        folder,
        load_in_4bit=True,
        fine_tune_type="lora",
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        pooling="last",
        append_eos_token=True,
        normalize=True,
        temperature=0.05,
    )
    quantized = [m for m in encoder.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized, "no Linear4bit module: the base was not loaded in 4 bits"
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable), sorted(trainable)[:5]
    frozen = {id(m): m.weight.detach().clone() for m in quantized}

    losses: list[float] = []
    loss_fn = RetrievalLoss.create("infonce", temperature=0.05)

    def logged(q, p, targets=None):
        value = loss_fn(q, p, targets)
        losses.append(value.detach().float().item())
        return value

    args = RetrievalTrainingArguments(
        output_dir=str(tmp_path),
        bf16=True,
        per_device_train_batch_size=8,
        max_steps=20,
        learning_rate=5e-3,
        lr_scheduler_type="constant",
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=0,
    )
    tokenizer = load_tokenizer(folder, encoder.settings.padding_side)
    trainer = RetrievalTrainer(
        model=encoder,
        args=args,
        train_dataset=train_items(16, 2),
        data_collator=RetrievalCollator(tokenizer, 24, 32, append_eos=True),
        loss_fn=logged,
    )
    trainer.train()
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    record("qlora_20_steps", losses=losses, first5=first, last5=last, linear4bit=len(quantized))
    assert len(losses) == 20
    assert all(torch.isfinite(torch.tensor(losses)))
    assert last < 0.8 * first, f"loss did not fall: first 5 {first:.4f}, last 5 {last:.4f}"
    for module in quantized:  # the 4-bit base never moves
        assert torch.equal(module.weight.detach(), frozen[id(module)])
