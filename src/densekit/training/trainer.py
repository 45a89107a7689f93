"""RetrievalTrainer: the HF Trainer plus only what a bi-encoder needs.

It computes the contrastive loss on the encoder's vectors (gathering them across ranks for
cross-device negatives), runs GradCache steps when asked, saves the encoder's folder format and
reloads it on resume. Optimizer, schedule, checkpoints, logging, mixed precision, DDP,
accelerate and DeepSpeed all stay the HF Trainer's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from densekit.errors import ConfigError
from densekit.modeling.encoder import DenseEncoder
from densekit.modeling.losses import RetrievalLoss, false_negative_mask
from densekit.training import distributed
from densekit.training.grad_cache import grad_cache_step

logger = logging.getLogger(__name__)
_EXACT_ONLY: list = []  # marker: the exact evaluator is the only eval set


def loss_targets(inputs: dict[str, Any]) -> torch.Tensor | None:
    """What a distilling loss learns from: teacher scores, else graded labels, else nothing."""
    teacher = inputs.get("teacher_scores")
    return teacher if teacher is not None else inputs.get("labels")


def report_evaluation(
    trainer: Trainer,
    values: dict[str, float],
    prefix: str,
    timing: tuple[str, float],
) -> dict[str, float]:
    """Log an evaluator's metrics as ``<prefix>_<name>`` (with its time under ``timing``'s name)
    and tell the callbacks, which pick the best checkpoint from them."""
    metrics = {f"{prefix}_{name}": float(value) for name, value in values.items()}
    metrics[f"{prefix}_{timing[0]}"] = timing[1]
    trainer.log(metrics)
    trainer.control = trainer.callback_handler.on_evaluate(
        trainer.args, trainer.state, trainer.control, metrics
    )
    return metrics


class EpochCallback(TrainerCallback):
    """Tells the dataset which epoch starts, so group sampling differs per epoch."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(int(state.epoch or 0))


class RetrievalTrainer(Trainer):
    """``transformers.Trainer`` for ``DenseEncoder`` models and a ``RetrievalLoss``."""

    def __init__(
        self,
        *args: Any,
        loss_fn: RetrievalLoss | None = None,
        evaluator: Callable[[nn.Module, Any], dict[str, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        # An exact evaluator stands in for the eval set when there is none, so the HF Trainer
        # accepts an evaluation strategy; evaluate() below never builds a dataloader from it.
        if evaluator is not None and kwargs.get("eval_dataset") is None:
            kwargs["eval_dataset"] = _EXACT_ONLY
        if "tokenizer" in kwargs:  # transformers 5 renamed it; Trove's scripts still pass it
            kwargs.setdefault("processing_class", kwargs.pop("tokenizer"))
        super().__init__(*args, **kwargs)
        self.evaluator = evaluator
        if not isinstance(self.model, DenseEncoder):
            raise ConfigError("RetrievalTrainer needs a densekit DenseEncoder model")
        temperature = self.model.settings.temperature
        self.loss_fn = loss_fn if loss_fn is not None else getattr(self.model, "default_loss", None)
        if self.loss_fn is None:
            self.loss_fn = RetrievalLoss.create("infonce", temperature=temperature)
        if self.train_dataset is not None:
            self.add_callback(EpochCallback(self.train_dataset))
        # Set by the training loop; set here too so a step can run outside ``train()``.
        self.current_gradient_accumulation_steps = self.args.gradient_accumulation_steps
        if getattr(self.args, "grad_cache", False) and self.is_deepspeed_enabled:
            raise ConfigError("--grad_cache cannot be combined with --deepspeed")

    # ------------------------------------------------------------------ loss

    def contrastive_loss(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        teacher_scores: torch.Tensor | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """The registry loss on this step's vectors, over all ranks with cross-device negatives.

        Scaled by the world size there, so DDP's gradient averaging yields the gradient of the
        loss over the global batch. With the batch's passage ids in ``inputs`` (and
        ``--mask_false_negatives``, the default) passages judged relevant to a query are not
        counted as its negatives, across ranks too.
        """
        ids = self._passage_ids(inputs)
        cross = getattr(self.args, "negatives_cross_device", False)
        if cross and distributed.world_size() > 1:
            q, p = distributed.gather_with_grad(q), distributed.gather_with_grad(p)
            if teacher_scores is not None:
                teacher_scores = distributed.gather_with_grad(teacher_scores)
            if ids is not None:
                ids = distributed.gather_ids(ids[0]), distributed.gather_ids(ids[1])
        extra = {"false_negatives": false_negative_mask(*ids)} if ids is not None else {}
        loss = self.loss_fn(q, p, teacher_scores, **extra)
        return loss * distributed.world_size() if cross else loss

    def _passage_ids(
        self, inputs: dict[str, Any] | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(passage ids, positive ids) when the false-negative mask applies to this step."""
        if (
            inputs is None
            or "passage_ids" not in inputs
            or not getattr(self.args, "mask_false_negatives", True)
            or not getattr(self.loss_fn, "masks_false_negatives", False)
        ):
            return None
        return inputs["passage_ids"], inputs["positive_ids"]

    def _loss_scale(self) -> int:
        cross = getattr(self.args, "negatives_cross_device", False)
        return distributed.world_size() if cross else 1

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        output = model(query=inputs["query"], passage=inputs["passage"])
        loss = self.contrastive_loss(output.q_reps, output.p_reps, loss_targets(inputs), inputs)
        return (loss, output) if return_outputs else loss

    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ):
        """The HF step, or a GradCache step; the returned (logged) loss is the unscaled loss."""
        if not getattr(self.args, "grad_cache", False):
            return super().training_step(model, inputs, num_items_in_batch) / self._loss_scale()
        model.train()
        inputs = self._prepare_inputs(inputs)
        steps = self.current_gradient_accumulation_steps
        teacher = loss_targets(inputs)

        def loss_and_backward(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            with self.compute_loss_context_manager():
                loss = self.contrastive_loss(q, p, teacher, inputs) / steps
            self.accelerator.backward(loss)
            return loss

        def no_sync():
            if hasattr(model, "no_sync"):
                return model.no_sync()
            return contextlib.nullcontext()

        loss = grad_cache_step(
            lambda batch: model(query=batch).q_reps,
            lambda batch: model(passage=batch).p_reps,
            inputs["query"],
            inputs["passage"],
            self.args.gc_q_chunk_size,
            self.args.gc_p_chunk_size,
            loss_and_backward,
            no_sync,
        )
        return loss * steps / self._loss_scale()

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        """Eval: the loss, each query's scores over its own group, and the group's labels.

        Labels are the graded qrels labels when the data has them, else 1 for the positive and
        0 for the negatives; teacher scores are never labels. ``IRMetrics`` turns them into
        nDCG, MRR and recall.
        """
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            output = model(query=inputs["query"], passage=inputs["passage"])
            q, p = output.q_reps, output.p_reps
            loss = self.loss_fn(q, p, loss_targets(inputs)).detach()
            group = p.size(0) // q.size(0)
            scores = torch.einsum("nd,ngd->ng", q, p.view(q.size(0), group, -1)).float()
        if prediction_loss_only:
            return loss, None, None
        labels = inputs.get("labels")
        if labels is None:
            labels = torch.zeros_like(scores)
            labels[:, 0] = 1.0
        return loss, scores, labels

    # ------------------------------------------------------------------ evaluation

    def get_eval_dataloader(self, eval_dataset: Any = None):
        """Evaluation groups need no full batches: the last one is kept (training drops it)."""
        drop, self.args.dataloader_drop_last = self.args.dataloader_drop_last, False
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.args.dataloader_drop_last = drop

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """The HF evaluation (loss, approximate IR metrics on eval groups) when there is an eval
        set, plus the exact full-corpus metrics when an evaluator was given."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if self.evaluator is None or dataset is not _EXACT_ONLY:
            metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        else:
            metrics = {}
        if self.evaluator is None:
            return metrics
        start = time.perf_counter()
        encoder = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        with torch.no_grad():
            exact = self.evaluator(encoder, self.processing_class)
        seconds = time.perf_counter() - start
        exact = report_evaluation(self, exact, metric_key_prefix, ("exact_seconds", seconds))
        return {**metrics, **exact}

    # ------------------------------------------------------------------ saving and resuming

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        encoder = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        encoder.save_pretrained(output_dir, tokenizer=self.processing_class, state_dict=state_dict)
        with open(os.path.join(output_dir, "training_args.json"), "w") as handle:
            handle.write(self.args.to_json_string())

    def _load_best_model(self) -> None:
        """``--load_best_model_at_end``: the best checkpoint's weights, in densekit's format."""
        best = self.state.best_model_checkpoint
        logger.info("loading the best checkpoint %s (%s)", best, self.state.best_metric)
        encoder = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        encoder.load_weights(best)

    def _load_from_checkpoint(
        self, resume_from_checkpoint: str, model: nn.Module | None = None
    ) -> None:
        encoder = self.accelerator.unwrap_model(model or self.model, keep_torch_compile=False)
        encoder.load_weights(resume_from_checkpoint)
