"""A whole JAX training run from the torch driver's three argument objects.

Data, text formatting, settings and the saved folder are densekit's own (shared with the torch
path); the encoder, step, optimizer, sharding and checkpoints are JAX's. Flags that only the
torch path honours stop with one line instead of being silently ignored.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from densekit.arguments import DataArguments, ModelArguments, RetrievalTrainingArguments
from densekit.data.train_dataset import TrainDataset
from densekit.errors import ConfigError
from densekit.jax.checkpoints import publish, restore_state, resume_point, save_checkpoint
from densekit.jax.data import GroupBatches
from densekit.jax.encoder import JaxEncoder
from densekit.jax.losses import JAX_LOSSES, loss_from_args
from densekit.jax.sharding import DataParallel, initialize_distributed
from densekit.jax.train_step import StepBuilder, TrainState, chunk_size, make_optimizer
from densekit.modeling.encoder import load_tokenizer
from densekit.training.model_card import write_model_card
from densekit.training.run import read_training_data

logger = logging.getLogger("densekit.jax_train")

_TORCH_ONLY_KWARGS = (
    "model_name_or_path",
    "cache_dir",
    "attn_implementation",
    "load_in_4bit",
    "fine_tune_type",
    "lora",
)


def check_supported(model_args: ModelArguments, args: RetrievalTrainingArguments) -> None:
    """One line for the first flag the JAX path cannot honour."""
    refused = [
        (model_args.fine_tune_type != "full", "--lora/--fine_tune_type (full fine-tuning only)"),
        (model_args.attn_implementation is not None, "--attn_implementation (own attention)"),
        (bool(args.deepspeed), "--deepspeed (JAX shards with jax.sharding)"),
        (args.fp16, "--fp16 (use --bf16)"),
        (args.exact_eval, "--eval_corpus (run densekit evaluate-checkpoints afterwards)"),
        (args.load_best_model_at_end, "--load_best_model_at_end"),
        (model_args.loss not in JAX_LOSSES, f"--loss {model_args.loss}"),
    ]
    for bad, flag in refused:
        if bad:
            raise ConfigError(f"{flag} is not on the JAX path; use densekit train for it")


def compute_dtype(requested: str) -> Any:
    """``bf16``/``fp32``; ``auto`` is bf16 on TPU and GPU, fp32 on CPU (XLA's CPU bf16 is
    emulated and slower)."""
    if requested == "auto":
        requested = "bf16" if jax.default_backend() in ("tpu", "gpu") else "fp32"
    return jnp.bfloat16 if requested == "bf16" else jnp.float32


def build_encoder(
    model_args: ModelArguments, data_args: DataArguments, args: Any, dtype: Any
) -> JaxEncoder:
    """The Flax encoder the flags name, its settings resolved as the torch path resolves them."""
    given = model_args.encoder_kwargs(data_args)
    for key in _TORCH_ONLY_KWARGS:
        given.pop(key)
    return JaxEncoder.from_pretrained(
        model_args.model_name_or_path,
        cache_dir=model_args.cache_dir,
        dtype=dtype,
        remat=args.gradient_checkpointing,
        seed=args.seed,
        **given,
    )


def total_updates(args: RetrievalTrainingArguments, steps_per_epoch: int) -> int:
    """Optimizer updates of the run (``--max_steps``, else epochs x updates per epoch)."""
    if args.max_steps > 0:
        return args.max_steps
    per_epoch = steps_per_epoch // args.gradient_accumulation_steps
    if per_epoch < 1:
        raise ConfigError(
            f"{steps_per_epoch} batches per epoch make no optimizer step with "
            f"--gradient_accumulation_steps {args.gradient_accumulation_steps}"
        )
    return max(1, math.ceil(args.num_train_epochs * per_epoch))


def _interval(value: float, total: int) -> int:
    """HF's ``*_steps``: a number of steps, or below 1 a fraction of the run."""
    return max(1, math.ceil(value * total) if value < 1 else int(value))


def _check_output_dir(args: RetrievalTrainingArguments) -> None:
    out = Path(args.output_dir)
    resumes_or_overwrites = args.overwrite_output_dir or args.resume_from_checkpoint
    if out.is_dir() and any(out.iterdir()) and not resumes_or_overwrites:
        raise ConfigError(
            f"--output_dir {out} is not empty: pass --overwrite_output_dir or "
            "--resume_from_checkpoint"
        )


class JaxRun:
    """Everything a run needs, built from the flags; :meth:`train` runs it."""

    def __init__(
        self,
        model_args: ModelArguments,
        data_args: DataArguments,
        args: RetrievalTrainingArguments,
        precision: str = "auto",
    ) -> None:
        check_supported(model_args, args)
        _check_output_dir(args)
        if initialize_distributed() and jax.process_index() != 0:
            logging.getLogger("densekit").setLevel(logging.WARNING)  # process 0 reports
        self.model_args, self.data_args, self.args = model_args, data_args, args
        self.data = read_training_data(data_args)
        self.encoder = build_encoder(model_args, data_args, args, compute_dtype(precision))
        settings = self.encoder.settings
        self.tokenizer = load_tokenizer(
            model_args.tokenizer_name or model_args.model_name_or_path, settings.padding_side
        )
        self.loss_fn = loss_from_args(model_args, settings)
        self.placement = DataParallel()
        dataset = TrainDataset(
            self.data[0],
            data_args.train_group_size,
            self.data[1],
            settings,
            args.seed,
            positive_sampling=data_args.positive_sampling,
        )
        per_device = args.per_device_train_batch_size
        self.batches = GroupBatches(
            dataset,
            self.tokenizer,
            settings,
            per_device * self.placement.size,
            args.seed,
            jax.process_index(),
            jax.process_count(),
        )
        self.updates = total_updates(args, self.batches.steps_per_epoch)
        self.tx = make_optimizer(args, self.updates)
        grad_cache = None
        if args.grad_cache:
            passages = per_device * data_args.train_group_size
            grad_cache = (
                chunk_size(per_device, args.gc_q_chunk_size, "--gc_q_chunk_size"),
                chunk_size(passages, args.gc_p_chunk_size, "--gc_p_chunk_size"),
            )
        builder = StepBuilder(
            self.encoder.vectors, self.loss_fn, self.tx, self.placement, grad_cache, True, args.seed
        )
        self.step = builder.jitted()

    def _write_model(self, state: TrainState) -> Any:
        params = self.placement.host(state.params)
        return lambda path: self.encoder.save_pretrained(path, self.tokenizer, params)

    def _should_save(self, update: int, micro: int) -> bool:
        strategy = str(getattr(self.args.save_strategy, "value", self.args.save_strategy))
        if strategy == "steps":
            return update % _interval(self.args.save_steps, self.updates) == 0
        if strategy == "epoch":
            return (micro + 1) % self.batches.steps_per_epoch == 0
        return False

    def train(self) -> TrainState:
        """Run every step (from the resume point), checkpointing and logging; save the model."""
        args, accum = self.args, self.args.gradient_accumulation_steps
        state = self.placement.replicate(TrainState.create(self.encoder.params, self.tx))
        start, history = 0, []
        resume = resume_point(args.resume_from_checkpoint, args.output_dir)
        if resume is not None:
            state, progress = restore_state(resume, state)
            start, history = progress["micro_step"], progress["history"]
            logger.info("resumed from %s at update %d", resume, progress["update"])
        log_every = _interval(args.logging_steps, self.updates)
        losses, began = [], time.perf_counter()
        for micro in range(start, self.updates * accum):
            queries, passages = self.batches(micro)
            state, loss = self.step(
                state, self.placement.global_batch(queries), self.placement.global_batch(passages)
            )
            losses.append(loss)
            if (micro + 1) % accum:
                continue
            update = (micro + 1) // accum
            if update % log_every == 0 or update == self.updates:
                record = {
                    "step": update,
                    "epoch": round((micro + 1) / self.batches.steps_per_epoch, 4),
                    "loss": float(np.mean(self.placement.host(losses))),
                    "seconds": round(time.perf_counter() - began, 2),
                }
                history.append(record)
                losses = []
                logger.info("%s", record)
            if self._should_save(update, micro):
                progress = {"micro_step": micro + 1, "update": update, "history": history}
                folder = Path(args.output_dir) / f"checkpoint-{update}"
                save_checkpoint(
                    folder, state, self._write_model(state), progress, args.save_total_limit
                )
        self._save_final(state, history)
        return state

    def _save_final(self, state: TrainState, history: list[dict]) -> None:
        if jax.process_index() != 0:
            return
        out = Path(self.args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=out))
        try:
            self._write_model(state)(tmp)
            publish(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        args = self.args
        hyper = {
            "backend": f"jax ({jax.default_backend()}, {self.placement.size} devices)",
            "epochs": args.num_train_epochs,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "train_group_size": self.data_args.train_group_size,
            "learning_rate": args.learning_rate,
            "temperature": self.encoder.settings.temperature,
            "compute dtype": jnp.dtype(self.encoder.model.dtype).name,
            "grad_cache": args.grad_cache,
            "steps": self.updates,
            "final loss": history[-1]["loss"] if history else None,
        }
        matryoshka = self.model_args.use_matryoshka or self.model_args.loss == "matryoshka"
        loss = "MatryoshkaLoss" if matryoshka else "InfoNCELoss"
        write_model_card(
            out,
            base_model=str(self.model_args.model_name_or_path),
            data=str(self.data_args.dataset_path),
            loss=loss,
            hyperparameters=hyper,
            metrics={},
            settings=asdict(self.encoder.settings),
        )
