"""A whole training run from the three argument objects: data, encoder, loss, trainer, save.

The command (``densekit train``) is a thin driver over :func:`train`; the Python API can call
it, or compose the same pieces itself.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import datasets
from transformers import set_seed

from densekit.arguments import (
    DataArguments,
    ModelArguments,
    RetrievalTrainingArguments,
)
from densekit.atomic import check_writable
from densekit.data.collator import RetrievalCollator
from densekit.data.readers import load_corpus, load_train
from densekit.data.train_dataset import Corpus, TrainDataset
from densekit.errors import ConfigError
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.modeling.factory import build_encoder
from densekit.modeling.losses import RetrievalLoss, loss_from_args
from densekit.training.checkpoints import resume_point, save_final
from densekit.training.model_card import write_model_card
from densekit.training.report import write_report
from densekit.training.trainer import RetrievalTrainer

logger = logging.getLogger("densekit.train")


def build_loss(model_args: ModelArguments, encoder: DenseEncoder) -> RetrievalLoss:
    """The registry loss named by ``--loss``, wrapped in Matryoshka when asked."""
    return loss_from_args(model_args, encoder.settings)


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
        positives=data_args.train_positives,
        positive_sampling=data_args.positive_sampling,
        max_positives=data_args.max_positives,
    )


def check_steps(args: RetrievalTrainingArguments, examples: int, source: str) -> None:
    """Fail before training when the flags would train zero optimizer steps."""
    world = max(args.world_size, 1)
    per_step = args.per_device_train_batch_size * world
    batches = examples // per_step if args.dataloader_drop_last else math.ceil(examples / per_step)
    if batches == 0 or (args.max_steps <= 0 and batches < args.gradient_accumulation_steps):
        raise ConfigError(
            f"{source}: {examples} training examples make {batches} full batches of "
            f"{per_step} (--per_device_train_batch_size x processes) per epoch, fewer than one "
            "optimizer step: lower the batch size or add data"
        )


def warn_schedule_change(
    args: RetrievalTrainingArguments, resume: str | None, examples: int
) -> int | None:
    """Warn when a resumed run's total steps differ from its checkpoint's: the learning-rate
    schedule (warmup, decay) is rebuilt over the new total, so the run continues on another
    curve than the one it started. Returns the checkpoint's total (None: nothing to compare)."""
    if not resume:
        return None
    try:
        state = json.loads((Path(resume) / "trainer_state.json").read_text(encoding="utf-8"))
        before = int(state["max_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if args.max_steps > 0:
        now = args.max_steps
    else:
        per_step = args.per_device_train_batch_size * max(args.world_size, 1)
        batches = examples // per_step if args.dataloader_drop_last else -(-examples // per_step)
        now = math.ceil(args.num_train_epochs * max(batches // args.gradient_accumulation_steps, 1))
    schedule = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    if now != before and schedule != "constant":
        logger.warning(
            "resuming %s, saved at step %s of a %d-step %s schedule, with %d steps in all: "
            "the learning-rate schedule is rebuilt over %d steps and differs from the saved "
            "run's from here on (resume with --max_steps %d to continue it unchanged)",
            resume, state.get("global_step"), before, schedule, now, now, before,
        )  # fmt: skip
    return before


def _check_output_dir(args: RetrievalTrainingArguments) -> None:
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output_dir {out} is a file; expected a folder path for this output")
    check_writable(out)
    if (
        out.is_dir()
        and any(out.iterdir())
        and not args.overwrite_output_dir
        and not args.resume_from_checkpoint
    ):
        raise ConfigError(
            f"--output_dir {out} is not empty: pass --overwrite_output_dir or --resume_from_checkpoint"
        )


def build_trainer(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: RetrievalTrainingArguments,
    data: tuple[datasets.Dataset, Corpus | None],
    evaluator: Callable | None = None,
) -> RetrievalTrainer:
    """Encoder, tokenizer, dataset, collator and loss wired into a RetrievalTrainer."""
    set_seed(training_args.seed)
    encoder = build_encoder(**model_args.encoder_kwargs(data_args))
    tokenizer = load_tokenizer(
        model_args.tokenizer_name or model_args.model_name_or_path, encoder.settings.padding_side
    )
    if encoder.settings.append_eos_token and tokenizer.eos_token_id is None:
        raise ConfigError("--append_eos_token: this tokenizer has no EOS token")
    collator = RetrievalCollator(
        tokenizer,
        query_max_len=encoder.settings.query_max_len,
        passage_max_len=encoder.settings.passage_max_len,
        append_eos=encoder.settings.append_eos_token,
        pad_to_multiple_of=data_args.pad_to_multiple_of or None,
    )
    return RetrievalTrainer(
        model=encoder,
        args=training_args,
        train_dataset=build_dataset(data_args, encoder, training_args.seed, data),
        data_collator=collator,
        processing_class=tokenizer,
        loss_fn=build_loss(model_args, encoder),
        evaluator=evaluator,
    )


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: RetrievalTrainingArguments,
    evaluator: Callable | None = None,
) -> RetrievalTrainer:
    """Build everything from the three argument objects, train, save; returns the trainer.

    ``evaluator(encoder, tokenizer) -> metrics`` (e.g. ``evaluation.exact.ExactEvaluator``)
    runs at each evaluation; with ``--load_best_model_at_end`` the best checkpoint is kept.
    The model folder gets a model card, ``report.md`` and the training curves.
    """
    _check_output_dir(training_args)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    data = read_training_data(data_args)
    check_steps(training_args, len(data[0]), str(data_args.dataset_path))
    seconds["read data"] = time.perf_counter() - start
    trainer = build_trainer(model_args, data_args, training_args, data, evaluator)
    seconds["build model"] = time.perf_counter() - start - seconds["read data"]
    resume = resume_point(training_args.resume_from_checkpoint, training_args.output_dir)
    warn_schedule_change(training_args, resume, len(data[0]))
    trainer.train(resume_from_checkpoint=resume)
    seconds["train"] = time.perf_counter() - start - sum(seconds.values())
    if training_args.load_best_model_at_end and trainer.state.best_model_checkpoint:
        logger.info(
            "kept %s (%s %s)",
            Path(trainer.state.best_model_checkpoint).name,
            training_args.metric_for_best_model,
            trainer.state.best_metric,
        )
    save_final(trainer, training_args.output_dir)
    if trainer.args.should_save:
        document(trainer, model_args, data_args, data, seconds)
    return trainer


def document(
    trainer: RetrievalTrainer,
    model_args: ModelArguments,
    data_args: DataArguments,
    data: tuple[datasets.Dataset, Corpus | None],
    seconds: dict[str, float],
) -> None:
    """Model card, training curves and ``report.md`` in the output folder."""
    args = trainer.args
    history = trainer.state.log_history
    metrics = {}
    for entry in history:
        metrics.update({k[5:]: v for k, v in entry.items() if k.startswith("eval_")})
    metrics = {k: v for k, v in metrics.items() if "@" in k}
    encoder = trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    hyper = {
        "epochs": args.num_train_epochs,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "train_group_size": data_args.train_group_size,
        "learning_rate": args.learning_rate,
        "temperature": encoder.settings.temperature,
        "precision": args.precision,
        "grad_cache": args.grad_cache,
        "steps": trainer.state.global_step,
    }
    write_model_card(
        args.output_dir,
        base_model=str(model_args.model_name_or_path),
        data=str(data_args.dataset_path),
        loss=type(trainer.loss_fn).__name__,
        hyperparameters=hyper,
        metrics=metrics,
        settings=asdict(encoder.settings),
    )
    sizes = {"training examples": len(data[0])}
    if data[1] is not None:
        sizes["corpus passages"] = len(data[1])
    arguments = {"model": asdict(model_args), "data": asdict(data_args), "training": args.to_dict()}
    write_report(args.output_dir, history, arguments, sizes, seconds)
