"""RetrievalTrainer on a tiny random BERT: full batches only, the loss it optimizes, epochs."""

from __future__ import annotations

import pytest
import torch

from densekit.arguments import RetrievalTrainingArguments
from densekit.data.collator import RetrievalCollator
from densekit.data.readers import load_train
from densekit.data.train_dataset import TrainDataset
from densekit.errors import ConfigError
from densekit.modeling.encoder import DenseEncoder
from densekit.modeling.losses import InfoNCELoss
from densekit.training.trainer import EpochCallback, RetrievalTrainer


def _trainer(tiny_model, tokenizer, tiny_train, tmp_path, **overrides):
    encoder = DenseEncoder.from_pretrained(tiny_model, pooling="mean", normalize=True)
    dataset = TrainDataset(load_train(tiny_train), group_size=3, seed=0)
    values = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 6,
        "num_train_epochs": 1,
        "learning_rate": 1e-3,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "seed": 0,
        "disable_tqdm": True,
        **overrides,
    }
    args = RetrievalTrainingArguments(**values)
    collator = RetrievalCollator(tokenizer, query_max_len=16, passage_max_len=24)
    trainer = RetrievalTrainer(
        model=encoder,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
    )
    return trainer, encoder, dataset, collator


def test_drops_last_incomplete_batch_and_trains(tiny_model, tokenizer, tiny_train, tmp_path):
    trainer, encoder, dataset, _ = _trainer(tiny_model, tokenizer, tiny_train, tmp_path)
    assert len(dataset) == 16 and trainer.args.dataloader_drop_last
    batches = list(trainer.get_train_dataloader())
    assert len(batches) == 2  # 16 rows, batches of 6: the last 4 rows are dropped
    for batch in batches:
        assert batch["query"]["input_ids"].shape[0] == 6
        assert batch["passage"]["input_ids"].shape[0] == 18
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 2
    changed = [n for n, p in encoder.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) > len(before) // 2
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)


def test_compute_loss_is_infonce_on_encoder_vectors(tiny_model, tokenizer, tiny_train, tmp_path):
    trainer, encoder, dataset, collator = _trainer(tiny_model, tokenizer, tiny_train, tmp_path)
    assert isinstance(trainer.loss_fn, InfoNCELoss)
    assert trainer.loss_fn.temperature == encoder.settings.temperature == 0.05
    batch = collator([dataset[i] for i in range(4)])
    encoder.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(encoder, batch)
        q = encoder.encode(batch["query"], True)
        p = encoder.encode(batch["passage"], False)
    scores = q @ p.T / 0.05
    targets = torch.arange(4) * 3
    expected = -(scores[torch.arange(4), targets] - torch.logsumexp(scores, dim=1)).mean()
    torch.testing.assert_close(loss, expected)


def test_epoch_callback_sets_dataset_epoch(tiny_model, tokenizer, tiny_train, tmp_path):
    seen = []

    class Recorder(EpochCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            super().on_epoch_begin(args, state, control, **kwargs)
            seen.append(self.dataset.epoch)

    trainer, _, dataset, _ = _trainer(
        tiny_model,
        tokenizer,
        tiny_train,
        tmp_path,
        num_train_epochs=3,
        per_device_train_batch_size=16,
    )
    trainer.add_callback(Recorder(dataset))
    trainer.train()
    assert seen == [0, 1, 2]


def test_needs_a_dense_encoder(tokenizer, tmp_path):
    args = RetrievalTrainingArguments(output_dir=str(tmp_path), report_to="none")
    with pytest.raises(ConfigError, match="DenseEncoder"):
        RetrievalTrainer(model=torch.nn.Linear(2, 2), args=args)


def test_grad_cache_step_equals_plain_step(tiny_model, tokenizer, tiny_train, tmp_path):
    """One SGD step with GradCache (uneven chunks) lands on the same weights as a plain step.
    torch both ways, but chunked forwards change matmul shapes and summation orders: the loss
    agrees to 1e-5 relatively, the weights to 1e-4 relatively and 1e-5 of their largest entry."""
    results = []
    for grad_cache in (False, True):
        trainer, encoder, _, _ = _trainer(
            tiny_model,
            tokenizer,
            tiny_train,
            tmp_path / str(grad_cache),
            max_steps=1,
            optim="sgd",
            learning_rate=0.5,
            grad_cache=grad_cache,
            gc_q_chunk_size=4,
            gc_p_chunk_size=5,
        )
        for module in encoder.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        trainer.train()
        results.append(
            (
                trainer.state.log_history[0]["loss"],
                {n: p.detach().clone() for n, p in encoder.named_parameters()},
            )
        )
    (plain_loss, plain), (gc_loss, cached) = results
    assert gc_loss == pytest.approx(plain_loss, rel=1e-5)
    start = dict(DenseEncoder.from_pretrained(tiny_model).named_parameters())
    assert not torch.allclose(plain["query_model.embeddings.word_embeddings.weight"],
                              start["query_model.embeddings.word_embeddings.weight"])  # fmt: skip
    for name, value in plain.items():
        atol = 1e-5 * max(1.0, value.abs().max().item())
        torch.testing.assert_close(cached[name], value, atol=atol, rtol=1e-4)
