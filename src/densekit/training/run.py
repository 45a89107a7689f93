"""A whole training run from the three argument objects: data, encoder, loss, trainer, save.

The command (``densekit train``) is a thin driver over :func:`train`; the Python API can call
it, or compose the same pieces itself.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import datasets
from transformers import set_seed

from densekit.arguments import (
    DataArguments,
    ModelArguments,
    RetrievalTrainingArguments,
)
from densekit.data.collator import RetrievalCollator
from densekit.data.readers import load_corpus, load_train
from densekit.data.train_dataset import Corpus, TrainDataset
from densekit.errors import ConfigError
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.modeling.factory import build_encoder
from densekit.modeling.losses import MatryoshkaLoss, RetrievalLoss
from densekit.training.checkpoints import resume_point
from densekit.training.trainer import RetrievalTrainer

logger = logging.getLogger("densekit.train")


def build_loss(model_args: ModelArguments, encoder: DenseEncoder) -> RetrievalLoss:
    """The registry loss named by ``--loss``, wrapped in Matryoshka when asked."""
    loss = RetrievalLoss.create(
        model_args.loss,
        temperature=encoder.settings.temperature,
        margin=model_args.margin,
        use_inbatch_neg=model_args.use_inbatch_neg,
        symmetric=model_args.symmetric_loss,
        distil_temperature=model_args.distil_temperature,
        normalize=encoder.settings.normalize,
    )
    if model_args.use_matryoshka and not isinstance(loss, MatryoshkaLoss):
        loss = MatryoshkaLoss(
            loss,
            dims=model_args.matryoshka_dims,
            weights=model_args.matryoshka_loss_weights,
            normalize=encoder.settings.normalize,
        )
    return loss


def read_training_data(data_args: DataArguments) -> tuple[datasets.Dataset, Corpus | None]:
    """Read and validate the training records (and corpus): the first thing a run does, so bad
    data fails in seconds, before a model is loaded or anything is written."""
    if data_args.dataset_path is None:
        raise ConfigError("no training data: pass --dataset_path (or --train_dir/--dataset_name)")
    records = load_train(
        data_args.dataset_path,
        max_examples_per_file=data_args.max_example_num_per_dataset,
        num_proc=data_args.dataset_proc_num,
    )
    corpus = None
    if data_args.corpus_path:
        corpus = Corpus(load_corpus(data_args.corpus_path), source=data_args.corpus_path)
    return records, corpus


def build_dataset(
    data_args: DataArguments,
    encoder: DenseEncoder,
    seed: int,
    data: tuple[datasets.Dataset, Corpus | None] | None = None,
) -> TrainDataset:
    """Wrap the training records into groups formatted as the encoder formats texts."""
    records, corpus = data if data is not None else read_training_data(data_args)
    return TrainDataset(
        records,
        group_size=data_args.train_group_size,
        corpus=corpus,
        text_format=encoder.settings,
        seed=seed,
    )


def check_steps(args: RetrievalTrainingArguments, examples: int, source: str) -> None:
    """Fail before training when the flags would train zero optimizer steps."""
    world = max(args.world_size, 1)
    per_step = args.per_device_train_batch_size * world
    batches = examples // per_step if args.dataloader_drop_last else math.ceil(examples / per_step)
    if args.max_steps <= 0 and batches < args.gradient_accumulation_steps:
        raise ConfigError(
            f"{source}: {examples} training examples make {batches} full batches of "
            f"{per_step} (--per_device_train_batch_size x processes) per epoch, fewer than one "
            "optimizer step: lower the batch size or add data"
        )


def _check_output_dir(args: RetrievalTrainingArguments) -> None:
    out = Path(args.output_dir)
    if (
        out.is_dir()
        and any(out.iterdir())
        and not args.overwrite_output_dir
        and not args.resume_from_checkpoint
    ):
        raise ConfigError(
            f"--output_dir {out} is not empty: pass --overwrite_output_dir or --resume_from_checkpoint"
        )


def save_final(trainer: RetrievalTrainer, output_dir: str) -> None:
    """Save the trained model into ``output_dir`` atomically (temp folder, then renames)."""
    if not trainer.args.should_save:
        trainer.save_model(output_dir)  # joins collective gathers (ZeRO-3), writes nothing
        return
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".final-", dir=output_dir)
    try:
        trainer.save_model(tmp)
        entries = sorted(os.listdir(tmp), key=lambda name: name == "densekit_config.json")
        for name in entries:  # the config last: its presence marks a complete folder
            target = Path(output_dir) / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(Path(tmp) / name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: RetrievalTrainingArguments,
    evaluator: Callable | None = None,
) -> RetrievalTrainer:
    """Build everything from the three argument objects, train, save; returns the trainer.

    ``evaluator(encoder, tokenizer) -> metrics`` (e.g. ``evaluation.exact.ExactEvaluator``)
    runs at each evaluation; with ``--load_best_model_at_end`` the best checkpoint is kept.
    """
    _check_output_dir(training_args)
    data = read_training_data(data_args)
    check_steps(training_args, len(data[0]), str(data_args.dataset_path))
    set_seed(training_args.seed)
    encoder = build_encoder(**model_args.encoder_kwargs(data_args))
    tokenizer = load_tokenizer(
        model_args.tokenizer_name or model_args.model_name_or_path, encoder.settings.padding_side
    )
    if encoder.settings.append_eos_token and tokenizer.eos_token_id is None:
        raise ConfigError("--append_eos_token: this tokenizer has no EOS token")
    dataset = build_dataset(data_args, encoder, training_args.seed, data)
    collator = RetrievalCollator(
        tokenizer,
        query_max_len=encoder.settings.query_max_len,
        passage_max_len=encoder.settings.passage_max_len,
        append_eos=encoder.settings.append_eos_token,
        pad_to_multiple_of=data_args.pad_to_multiple_of or None,
    )
    trainer = RetrievalTrainer(
        model=encoder,
        args=training_args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
        loss_fn=build_loss(model_args, encoder),
        evaluator=evaluator,
    )
    resume = resume_point(training_args.resume_from_checkpoint, training_args.output_dir)
    trainer.train(resume_from_checkpoint=resume)
    if training_args.load_best_model_at_end and trainer.state.best_model_checkpoint:
        logger.info(
            "kept %s (%s %s)",
            Path(trainer.state.best_model_checkpoint).name,
            training_args.metric_for_best_model,
            trainer.state.best_metric,
        )
    save_final(trainer, training_args.output_dir)
    return trainer
