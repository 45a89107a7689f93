"""Training a cross-encoder: pair collator, a Trainer whose loss sees each group, the whole run.

The data side is the bi-encoder's (``readers.load_train`` + ``TrainDataset``: every training
format, groups of 1 positive + n negatives, teacher scores when every record has them); only
the collator differs (it tokenizes ``(query, passage)`` pairs) and the loss (a function of the
``[batch, group]`` logits, ``modeling.reranker_losses``). Optimizer, schedule, precision,
checkpoints and distribution stay the HF Trainer's.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow.compute as pc
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments, set_seed

from densekit.atomic import check_writable
from densekit.data.readers import load_corpus, load_train
from densekit.data.train_dataset import Corpus, TrainDataset
from densekit.errors import ConfigError, DataError
from densekit.modeling.reranker import CONFIG_NAME, CrossEncoderReranker, RerankerConfig
from densekit.modeling.reranker_losses import needs_teacher, reranker_loss
from densekit.training.checkpoints import save_final
from densekit.training.trainer import EpochCallback

logger = logging.getLogger("densekit.train_reranker")


@dataclass
class PairCollator:
    """Groups -> one batch of ``n * group`` tokenized pairs (query repeated per passage)."""

    tokenizer: PreTrainedTokenizerBase
    max_len: int = 512
    pad_to_multiple_of: int | None = 8

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        queries = [item["query"] for item in items for _ in item["passages"]]
        passages = [text for item in items for text in item["passages"]]
        batch: dict[str, Any] = dict(
            self.tokenizer(
                queries,
                passages,
                max_length=self.max_len,
                truncation=True,
                padding=True,
                pad_to_multiple_of=self.pad_to_multiple_of,
                return_tensors="pt",
            )
        )
        if all(item.get("scores") for item in items):
            batch["teacher_scores"] = torch.tensor(
                [item["scores"] for item in items], dtype=torch.float32
            )
        return batch


class RerankerTrainer(Trainer):
    """``transformers.Trainer`` over a :class:`CrossEncoderReranker`, loss over each group."""

    def __init__(
        self,
        *args: Any,
        group_size: int,
        loss: str = "listwise",
        distill_temperature: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.model, CrossEncoderReranker):
            raise ConfigError("RerankerTrainer needs a densekit CrossEncoderReranker model")
        self.group_size = group_size
        self.loss_name = loss
        self.loss_fn = reranker_loss(loss)
        self.distill_temperature = distill_temperature
        if self.train_dataset is not None:
            self.add_callback(EpochCallback(self.train_dataset))

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        teacher = inputs.pop("teacher_scores", None)
        scores = model(**inputs).view(-1, self.group_size)
        if needs_teacher(self.loss_name):
            loss = self.loss_fn(scores, teacher, temperature=self.distill_temperature)
        else:
            loss = self.loss_fn(scores, teacher)
        return (loss, scores) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained(output_dir, state_dict=state_dict)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None):
        from transformers import AutoModelForSequenceClassification

        target = self.accelerator.unwrap_model(model or self.model, keep_torch_compile=False)
        loaded = AutoModelForSequenceClassification.from_pretrained(resume_from_checkpoint)
        target.model.load_state_dict(loaded.state_dict())


@dataclass
class RerankerRun:
    """Everything ``densekit train-reranker`` decides, without argparse."""

    model_name_or_path: str
    dataset_path: str | list[str]
    output_dir: str
    corpus_path: str | None = None
    train_group_size: int = 8
    max_len: int = 512
    loss: str = "listwise"
    distill_temperature: float = 1.0
    query_prefix: str = ""
    passage_prefix: str = ""
    activation: str | None = None  # default: sigmoid for bce, identity otherwise
    max_examples_per_file: int | None = None
    overwrite_output_dir: bool = False
    training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments keywords


def read_data(run: RerankerRun) -> tuple[datasets.Dataset, Corpus | None]:
    """Read and validate the training records (and corpus) before anything is built."""
    records = load_train(run.dataset_path, max_examples_per_file=run.max_examples_per_file)
    corpus = None
    if run.corpus_path:
        corpus = Corpus(load_corpus(run.corpus_path), source=run.corpus_path)
    return records, corpus


def has_teacher_scores(records: datasets.Dataset) -> bool:
    """Whether every record carries teacher scores (what ``--loss distill`` learns from)."""
    counts = pc.list_value_length(records.data.column("pos_scores")).to_numpy(zero_copy_only=False)
    return len(records) > 0 and bool((counts > 0).all())


def check_run(run: RerankerRun) -> None:
    """Flag problems and the output folder, before data is read or anything is written."""
    if run.train_group_size < 1:
        raise ConfigError(f"--train_group_size must be at least 1, got {run.train_group_size}")
    if (
        run.loss in ("listwise", "ce", "cross_entropy", "distill", "kl")
        and run.train_group_size < 2
    ):
        raise ConfigError(f"--loss {run.loss} compares passages: --train_group_size must be >= 2")
    reranker_loss(run.loss)
    if run.max_len < 2:
        raise ConfigError(f"--max_len must be at least 2, got {run.max_len}")
    out = Path(run.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output_dir {out} is a file; expected a folder path for this output")
    check_writable(out)
    if out.is_dir() and any(out.iterdir()) and not run.overwrite_output_dir:
        raise ConfigError(f"--output_dir {out} is not empty: pass --overwrite_output_dir")


def build_trainer(
    run: RerankerRun, data: tuple[datasets.Dataset, Corpus | None]
) -> RerankerTrainer:
    """Model, dataset, collator and arguments wired into a RerankerTrainer."""
    args = TrainingArguments(
        output_dir=run.output_dir,
        report_to="none",
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),  # else HF refuses bf16 on a CPU, native or not
        **run.training,
    )
    set_seed(args.seed)
    activation = run.activation or ("sigmoid" if run.loss in ("bce", "pointwise") else "identity")
    settings = RerankerConfig(
        max_len=run.max_len,
        activation=activation,
        query_prefix=run.query_prefix,
        passage_prefix=run.passage_prefix,
    )
    model = CrossEncoderReranker.from_backbone(run.model_name_or_path, settings)
    records, corpus = data
    dataset = TrainDataset(
        records,
        group_size=run.train_group_size,
        corpus=corpus,
        text_format=model.settings,
        seed=args.seed,
    )
    if needs_teacher(run.loss) and not dataset.has_scores:
        raise DataError(
            str(run.dataset_path), "--loss distill: every record needs pos_scores and neg_scores"
        )
    return RerankerTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=PairCollator(model.tokenizer, max_len=model.settings.max_len),
        processing_class=model.tokenizer,
        group_size=run.train_group_size,
        loss=run.loss,
        distill_temperature=run.distill_temperature,
    )


def train_reranker(run: RerankerRun) -> RerankerTrainer:
    """Check, read, build, train, save; returns the trainer (its log history has the losses)."""
    check_run(run)
    data = read_data(run)
    if needs_teacher(run.loss) and not has_teacher_scores(data[0]):
        raise DataError(
            str(run.dataset_path), "--loss distill: every record needs pos_scores and neg_scores"
        )
    trainer = build_trainer(run, data)
    trainer.train(resume_from_checkpoint=run.training.get("resume_from_checkpoint"))
    save_final(trainer, run.output_dir, CONFIG_NAME)
    return trainer
