"""One bi-encoder fine-tuning round of the recipe and the checkpoint dev chooses from it.

Used by the first round (InfoNCE on the mined file) and by the optional distillation round
(the ``distill`` loss on the cross-encoder's scores, :mod:`densekit.recipes.distill`).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from densekit.arguments import DataArguments, ModelArguments, RetrievalTrainingArguments
from densekit.data.readers import parse_train_row
from densekit.data.runs import Run
from densekit.evaluation.exact import ExactEvaluator
from densekit.recipes.config import RecipeConfig
from densekit.recipes.results import METRICS
from densekit.training.run import train
from densekit.training.trainer import RetrievalTrainer

logger = logging.getLogger("densekit.recipe")

# ``--train_positives auto`` covers the judged positives from this mean per query on
MANY_POSITIVES = 2.0


def training_positives(setting: str, train_file: Path, cap: int) -> tuple[str, int, float]:
    """What fine-tuning trains on: ``one`` or ``all``, the factor its epochs are multiplied by,
    and the mean judged positives per training query of the mined file.

    ``auto`` samples one positive per query per epoch (by grade) and, where queries average
    ``MANY_POSITIVES`` or more, runs that many times the epochs (the rounded mean, at most
    ``cap``), so the epochs reach the judged documents and the dev evaluation after each epoch
    picks the length. On a keyword-query collection with 9.7 per query that scored 0.1605 dev
    nDCG@10 against 0.0759 in one epoch and 0.1312 for ``all`` capped at 4 per query (about the
    same steps); SciFact (1.1 per query) is unchanged (docs/benchmarks.md §19, §34).
    """
    with open(train_file, encoding="utf-8") as handle:
        rows = [
            parse_train_row(json.loads(line), train_file, n) for n, line in enumerate(handle, 1)
        ]
    mean = sum(len(row["pos"]) for row in rows) / max(len(rows), 1)
    if setting != "auto":
        return setting, 1, mean
    return "one", (min(round(mean), cap) if mean >= MANY_POSITIVES else 1), mean


def fine_tune(
    config: RecipeConfig,
    base: str,
    train_file: Path,
    model_dir: Path,
    evaluator: ExactEvaluator | None = None,
    loss: str = "infonce",
    group_size: int | None = None,
    epochs: float | None = None,
    learning_rate: float | None = None,
) -> dict[str, Any]:
    """Train ``base`` on ``train_file`` with the config's hyper-parameters (GradCache chunks
    bound the memory; the gradient is the full batch's). With ``evaluator`` the dev split is
    searched exactly at each evaluation and the best checkpoint is kept; returns which.
    ``loss``, ``group_size``, ``epochs`` and ``learning_rate`` override the config's (the
    distillation round's own settings)."""
    positives, factor, mean = training_positives(
        config.train_positives, train_file, config.max_positives
    )
    epochs = (epochs or config.epochs) * factor
    logger.info(
        "training on %s judged positive(s) per query per epoch for %g epochs (%.1f per "
        "training query)",
        "one" if positives == "one" else f"up to {config.max_positives}",
        epochs,
        mean,
    )
    evaluating = evaluator is not None and config.eval_strategy != "no"
    schedule = config.eval_strategy if evaluating else "no"
    steps = config.eval_steps if schedule == "steps" else None
    model_args = ModelArguments(
        model_name_or_path=base,
        loss=loss,
        temperature=config.temperature,
        symmetric_loss=config.symmetric_loss,
    )
    data_args = DataArguments(
        dataset_path=str(train_file),
        train_group_size=group_size or config.group_size,
        query_max_len=config.query_max_len,
        passage_max_len=config.passage_max_len,
        train_positives=positives,
        max_positives=config.max_positives if positives == "all" else None,
        positive_sampling=config.positive_sampling,
    )
    training_args = RetrievalTrainingArguments(
        output_dir=str(model_dir),
        overwrite_output_dir=True,
        per_device_train_batch_size=config.batch_size,
        learning_rate=learning_rate or config.learning_rate,
        num_train_epochs=epochs,
        warmup_steps=config.warmup_ratio,
        logging_steps=5,
        eval_strategy=schedule,
        eval_steps=steps,
        save_strategy=schedule,
        save_steps=steps,
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=evaluating,
        metric_for_best_model=METRICS[0],
        greater_is_better=True,
        seed=config.seed if config.train_seed is None else config.train_seed,
        precision=config.precision,
        grad_cache=config.grad_cache,
        mask_false_negatives=config.mask_false_negatives,
        gc_q_chunk_size=config.gc_chunk_size,
        gc_p_chunk_size=config.gc_chunk_size,
        report_to=[],
    )
    trainer = train(model_args, data_args, training_args, evaluator if evaluating else None)
    return {**kept_checkpoint(trainer), "positives": positives, "epochs": epochs}


def kept_checkpoint(trainer: RetrievalTrainer) -> dict[str, Any]:
    """The checkpoint fine-tuning kept, its dev score, and every evaluation's score by step."""
    metric = trainer.args.metric_for_best_model or METRICS[0]
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    evaluations = [(e["step"], e[key]) for e in trainer.state.log_history if key in e]
    best = trainer.state.best_model_checkpoint
    return {
        "checkpoint": Path(best).name if best else None,
        "metric": key.removeprefix("eval_"),
        "best": trainer.state.best_metric,
        "evaluations": evaluations,
    }


ZERO_SHOT = "zero-shot"  # what ``kept["checkpoint"]`` says when no evaluation beat the base


def beats_zero_shot(kept: dict[str, Any], zero_shot: float) -> bool:
    """Whether the kept checkpoint scored above the zero-shot model on dev (True when training
    did not evaluate: then nothing says otherwise)."""
    return kept["best"] is None or kept["best"] > zero_shot


def keep_zero_shot(kept: dict[str, Any], base: str, model_dir: Path) -> None:
    """No evaluation beat the model fine-tuning started from: the training length chosen on dev
    is zero steps, so the base model becomes the recipe's model."""
    logger.warning(
        "fine-tuning never beat the zero-shot model on dev (best %s %.4f): keeping the zero-shot "
        "model",
        kept["metric"],
        kept["best"],
    )
    shutil.rmtree(model_dir)
    shutil.copytree(base, model_dir)
    kept["checkpoint"] = ZERO_SHOT


def kept_run(kept: dict[str, Any], evaluator: ExactEvaluator) -> Run | None:
    """The dev run of the kept checkpoint, as its evaluation searched it (None when training
    did not evaluate): the kept weights are the final model's, so this is its dev run."""
    steps = [step for step, _ in kept["evaluations"]]
    if not kept["checkpoint"] or len(steps) != len(evaluator.runs):
        return None
    return evaluator.runs[steps.index(int(kept["checkpoint"].split("-")[-1]))]
