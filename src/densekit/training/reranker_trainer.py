"""Training a cross-encoder: pair collator, a Trainer whose loss sees each group, the whole run.

The data side is the bi-encoder's (``readers.load_train`` + ``TrainDataset``: every training
format, groups of 1 positive + n negatives, teacher scores when every record has them); only
the collator differs (it tokenizes ``(query, passage)`` pairs) and the loss (a function of the
``[batch, group]`` logits, ``modeling.reranker_losses``). Optimizer, schedule, precision,
checkpoints and distribution stay the HF Trainer's.

As for the bi-encoder: ``fine_tune_type`` full, lora (peft adapters + the head; merged into the
weights at the final save, so the folder is a plain reranker) or bitfit (biases + the head);
``gradient_checkpointing``; an ``evaluator(reranker) -> metrics`` (e.g.
:class:`densekit.evaluation.rerank_evaluator.RerankEvaluator`: rerank a dev run exactly) at each
evaluation, with ``load_best_model_at_end`` keeping the best checkpoint by its metric; a model
card (``README.md``), ``report.md`` and the training curves in the output folder.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
from densekit.evaluation.metrics import parse_metrics
from densekit.modeling import cpu_dropout
from densekit.modeling.reranker import (
    CONFIG_NAME,
    FINE_TUNE_TYPES,
    CrossEncoderReranker,
    RerankerConfig,
)
from densekit.modeling.reranker_losses import needs_teacher, reranker_loss
from densekit.training.checkpoints import save_final
from densekit.training.trainer import EpochCallback, report_evaluation

logger = logging.getLogger("densekit.train_reranker")
_EVALUATOR_ONLY: list = []  # marker: the evaluator is the only eval set


@dataclass
class PairCollator:
    """Groups -> one batch of ``n * group`` tokenized pairs (query repeated per passage)."""

    tokenizer: PreTrainedTokenizerBase
    max_len: int = 512
    pad_to_multiple_of: int | None = 8

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        queries = [item["query"] for item in items for _ in item["passages"]]
        passages = [text for item in items for text in item["passages"]]
        multiple = self.pad_to_multiple_of
        if multiple and self.max_len % multiple:  # the tokenizer refuses both then
            multiple = None
        batch: dict[str, Any] = dict(
            self.tokenizer(
                queries,
                passages,
                max_length=self.max_len,
                truncation=True,
                padding=True,
                pad_to_multiple_of=multiple,
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
        evaluator: Callable[[CrossEncoderReranker], dict[str, float]] | None = None,
        head_learning_rate: float | None = None,
        **kwargs: Any,
    ) -> None:
        # the evaluator stands in for an eval set, so the HF Trainer accepts an evaluation
        # strategy; evaluate() below never builds a dataloader from it
        if evaluator is not None and kwargs.get("eval_dataset") is None:
            kwargs["eval_dataset"] = _EVALUATOR_ONLY
        super().__init__(*args, **kwargs)
        # compute_loss returns the mean over its groups: HF must divide it by the accumulation
        # steps (it would not if it took the model for one that counts items itself)
        self.model_accepts_loss_kwargs = False
        if not isinstance(self.model, CrossEncoderReranker):
            raise ConfigError("RerankerTrainer needs a densekit CrossEncoderReranker model")
        self.evaluator = evaluator
        self.group_size = group_size
        self.loss_name = loss
        self.loss_fn = reranker_loss(loss)
        self.distill_temperature = distill_temperature
        self.head_learning_rate = head_learning_rate
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

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """HF's optimizer; with ``head_learning_rate`` the head's parameters move to groups of
        their own at that peak rate (same weight decay, same schedule). A head initialised at
        random on a pretrained body barely moves at the body's rate: from a retriever the
        listwise loss stays at chance for dozens of steps (docs/benchmarks.md §19, §23)."""
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if not fresh or self.head_learning_rate is None:
            return optimizer
        reranker = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        head = {id(param) for param in reranker.head_parameters()}
        for group in list(optimizer.param_groups):
            moved = [param for param in group["params"] if id(param) in head]
            if moved:
                group["params"] = [param for param in group["params"] if id(param) not in head]
                settings = {key: value for key, value in group.items() if key != "params"}
                optimizer.add_param_group(
                    {**settings, "params": moved, "lr": self.head_learning_rate}
                )
        return optimizer

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """The evaluator's metrics on the current weights, logged as ``eval_<name>`` (HF's own
        evaluation when there is no evaluator or an eval set is given)."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if self.evaluator is None or dataset is not _EVALUATOR_ONLY:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        start = time.perf_counter()
        reranker = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        values = self.evaluator(reranker)
        seconds = time.perf_counter() - start
        return report_evaluation(self, values, metric_key_prefix, ("seconds", seconds))

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained(output_dir, state_dict=state_dict)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_best_model(self) -> None:
        """``load_best_model_at_end``: the best checkpoint's weights (adapters + head for LoRA)."""
        best = self.state.best_model_checkpoint
        logger.info("loading the best checkpoint %s (%s)", best, self.state.best_metric)
        self.accelerator.unwrap_model(self.model, keep_torch_compile=False).load_weights(best)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None):
        target = self.accelerator.unwrap_model(model or self.model, keep_torch_compile=False)
        target.load_weights(resume_from_checkpoint)


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
    positive_sampling: str = "grade"  # graded positives (pos_grades) drawn by grade, or uniform
    overwrite_output_dir: bool = False
    # which parameters train: full | lora (adapters + head, merged at the final save) | bitfit
    fine_tune_type: str = "full"
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: str | None = None  # comma list; default: per model family
    # evaluation during training: rerank the top eval_depth of eval_run for the judged
    # eval_queries (passages from corpus_path), metrics on eval_qrels
    eval_run: str | None = None
    eval_queries: str | None = None
    eval_qrels: str | None = None
    eval_metrics: str = "ndcg@10,mrr@10"
    eval_depth: int = 100
    eval_batch_size: int = 32
    # peak learning rate of the head modules (default: the body's, training["learning_rate"])
    head_learning_rate: float | None = None
    training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments keywords

    @property
    def evaluates(self) -> bool:
        """Whether evaluation files are given (an evaluator may also be passed in code)."""
        return bool(self.eval_run)


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


def _check_evaluation(run: RerankerRun, evaluating: bool) -> None:
    given = {
        "--eval_run": run.eval_run,
        "--eval_queries": run.eval_queries,
        "--eval_qrels": run.eval_qrels,
    }
    if any(given.values()):
        missing = [name for name, value in given.items() if not value]
        if not run.corpus_path:
            missing.append("--corpus_path (the passages of the run)")
        if missing:
            raise ConfigError(
                "evaluation during training needs --eval_run, --eval_queries, --eval_qrels and "
                f"--corpus_path; missing {', '.join(missing)}"
            )
    if run.eval_depth < 1 or run.eval_batch_size < 1:
        raise ConfigError("--eval_depth and --per_device_eval_batch_size must be positive")
    computed = parse_metrics(run.eval_metrics)
    training = run.training
    metric = str(training.get("metric_for_best_model") or "").removeprefix("eval_")
    if str(training.get("eval_strategy", "no")) != "no" and not evaluating:
        raise ConfigError(
            "--eval_strategy needs evaluation: --eval_run, --eval_queries, --eval_qrels"
        )
    if training.get("load_best_model_at_end") and not evaluating:
        raise ConfigError(
            "--load_best_model_at_end needs evaluation: --eval_run, --eval_queries, --eval_qrels"
        )
    if evaluating and metric and metric not in computed:
        raise ConfigError(
            f"--metric_for_best_model {metric} is not computed; --eval_metrics gives "
            f"{', '.join(computed)}"
        )


def training_arguments(run: RerankerRun, evaluating: bool = False) -> TrainingArguments:
    """The HF arguments of the run; with an evaluator, evaluation each epoch unless a strategy
    is given, and the best checkpoint by nDCG@10 (the first eval metric) unless named."""
    training = dict(run.training)
    training.pop("resume_from_checkpoint", None)
    if evaluating:
        if str(training.get("eval_strategy", "no")) == "no":
            training["eval_strategy"] = "epoch"
        if training.get("load_best_model_at_end"):
            training.setdefault("metric_for_best_model", parse_metrics(run.eval_metrics)[0])
    else:
        training["eval_strategy"] = "no"
    try:
        return TrainingArguments(
            output_dir=run.output_dir,
            report_to="none",
            remove_unused_columns=False,
            use_cpu=not torch.cuda.is_available(),  # else HF refuses bf16 on a CPU
            **training,
        )
    except ValueError as exc:  # HF's checks of flag combinations (e.g. save vs eval steps)
        raise ConfigError(" ".join(str(exc).split())) from None


def check_run(run: RerankerRun, evaluating: bool | None = None) -> TrainingArguments:
    """Flag problems and the output folder, before data is read or anything is written;
    returns the HF arguments (their own checks run here too)."""
    evaluating = run.evaluates if evaluating is None else evaluating
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
    if run.head_learning_rate is not None and not run.head_learning_rate > 0:
        raise ConfigError(f"--head_learning_rate must be positive, got {run.head_learning_rate}")
    if run.fine_tune_type not in FINE_TUNE_TYPES:
        raise ConfigError(
            f"--fine_tune_type {run.fine_tune_type!r}: expected {', '.join(FINE_TUNE_TYPES)}"
        )
    if run.fine_tune_type == "lora" and (run.lora_r < 1 or not 0 <= run.lora_dropout < 1):
        raise ConfigError("--lora_r must be positive and --lora_dropout in [0, 1)")
    _check_evaluation(run, evaluating)
    out = Path(run.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output_dir {out} is a file; expected a folder path for this output")
    check_writable(out)
    if out.is_dir() and any(out.iterdir()) and not run.overwrite_output_dir:
        raise ConfigError(f"--output_dir {out} is not empty: pass --overwrite_output_dir")
    return training_arguments(run, evaluating)


def build_model(run: RerankerRun) -> CrossEncoderReranker:
    """The reranker from the backbone, with the parameters that train chosen and its CPU dropout
    drawn fast (:mod:`densekit.modeling.cpu_dropout`)."""
    activation = run.activation or ("sigmoid" if run.loss in ("bce", "pointwise") else "identity")
    settings = RerankerConfig(
        max_len=run.max_len,
        activation=activation,
        query_prefix=run.query_prefix,
        passage_prefix=run.passage_prefix,
    )
    model = CrossEncoderReranker.from_backbone(run.model_name_or_path, settings)
    if run.fine_tune_type == "lora":
        model.apply_lora(run.lora_r, run.lora_alpha, run.lora_dropout, run.lora_target_modules)
    elif run.fine_tune_type == "bitfit":
        model.apply_bitfit()
    return cpu_dropout.install(model)


def corpus_documents(corpus: Corpus) -> Callable[[str], tuple[str, str]]:
    """``docid -> (title, text)`` from a training corpus (a missing id is a DataError)."""

    def document(docid: str) -> tuple[str, str]:
        row = corpus.get(docid)
        return row.get("title") or "", row.get("text") or ""

    return document


def build_evaluator(run: RerankerRun, corpus: Corpus | None) -> Callable | None:
    """The evaluator the run's eval files name (read now, so bad ones fail before training)."""
    if not run.evaluates:
        return None
    from densekit.evaluation.rerank_evaluator import RerankEvaluator

    assert corpus is not None  # check_run requires --corpus_path with --eval_run
    return RerankEvaluator.from_files(
        run.eval_run,
        run.eval_queries,
        run.eval_qrels,
        corpus_documents(corpus),
        metrics=run.eval_metrics,
        depth=run.eval_depth,
        batch_size=run.eval_batch_size,
    )


def build_trainer(
    run: RerankerRun,
    data: tuple[datasets.Dataset, Corpus | None],
    evaluator: Callable | None = None,
    args: TrainingArguments | None = None,
) -> RerankerTrainer:
    """Model, dataset, collator and arguments wired into a RerankerTrainer."""
    args = args or training_arguments(run, evaluator is not None)
    set_seed(args.seed)
    model = build_model(run)
    records, corpus = data
    dataset = TrainDataset(
        records,
        group_size=run.train_group_size,
        corpus=corpus,
        text_format=model.settings,
        seed=args.seed,
        positive_sampling=run.positive_sampling,
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
        evaluator=evaluator,
        head_learning_rate=run.head_learning_rate,
    )


def evaluations(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Each evaluation's step and metrics (``eval_`` dropped; only ``name@k`` metrics)."""
    out = []
    for entry in log_history:
        values = {k[5:]: v for k, v in entry.items() if k.startswith("eval_") and "@" in k}
        if values:
            out.append({"step": int(entry.get("step", 0)), **values})
    return out


def kept_evaluation(trainer: Trainer) -> dict[str, float] | None:
    """The evaluation of the weights saved: the best checkpoint's when it was loaded at the
    end, else the last one (None without evaluations)."""
    found = evaluations(trainer.state.log_history)
    if not found:
        return None
    best = trainer.state.best_model_checkpoint
    if trainer.args.load_best_model_at_end and best:
        step = int(Path(best).name.rsplit("-", 1)[-1])
        for entry in found:
            if entry["step"] == step:
                return entry
    return found[-1]


def train_reranker(run: RerankerRun, evaluator: Callable | None = None) -> RerankerTrainer:
    """Check, read, build, train, save; returns the trainer (its log history has the losses
    and evaluations). ``evaluator(reranker) -> metrics`` overrides the run's eval files."""
    args = check_run(run, evaluating=evaluator is not None or run.evaluates)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    data = read_data(run)
    if needs_teacher(run.loss) and not has_teacher_scores(data[0]):
        raise DataError(
            str(run.dataset_path), "--loss distill: every record needs pos_scores and neg_scores"
        )
    if evaluator is None:
        evaluator = build_evaluator(run, data[1])
    seconds["read data"] = time.perf_counter() - start
    trainer = build_trainer(run, data, evaluator, args)
    seconds["build model"] = time.perf_counter() - start - seconds["read data"]
    trainer.train(resume_from_checkpoint=run.training.get("resume_from_checkpoint"))
    seconds["train"] = time.perf_counter() - start - sum(seconds.values())
    if trainer.args.load_best_model_at_end and trainer.state.best_model_checkpoint:
        logger.info(
            "kept %s (%s %s)",
            Path(trainer.state.best_model_checkpoint).name,
            trainer.args.metric_for_best_model,
            trainer.state.best_metric,
        )
    model = trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    model.merge_lora()  # the final folder is a plain reranker (ST's CrossEncoder loads it)
    save_final(trainer, run.output_dir, CONFIG_NAME)
    if trainer.args.should_save:
        document(trainer, run, data, seconds)
    return trainer


def document(
    trainer: RerankerTrainer,
    run: RerankerRun,
    data: tuple[datasets.Dataset, Corpus | None],
    seconds: dict[str, float],
) -> None:
    """Model card, training curves and ``report.md`` in the output folder."""
    from densekit.training.model_card import write_reranker_card
    from densekit.training.report import write_report

    args = trainer.args
    kept = kept_evaluation(trainer) or {}
    metrics = {k: v for k, v in kept.items() if k != "step"}
    model = trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    hyper = {
        "epochs": args.num_train_epochs,
        "steps": trainer.state.global_step,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "train_group_size": run.train_group_size,
        "learning_rate": args.learning_rate,
        "fine_tune_type": run.fine_tune_type,
        "bf16": args.bf16,
        "gradient_checkpointing": args.gradient_checkpointing,
    }
    if run.fine_tune_type == "lora":
        hyper["lora (r, alpha, dropout)"] = f"{run.lora_r}, {run.lora_alpha}, {run.lora_dropout}"
    selection = None
    if kept:
        chosen = "best" if args.load_best_model_at_end else "last"
        selection = f"the {chosen} evaluation's weights, step {kept['step']}"
    write_reranker_card(
        args.output_dir,
        base_model=str(run.model_name_or_path),
        data=str(run.dataset_path),
        loss=run.loss,
        hyperparameters=hyper,
        metrics=metrics,
        settings=asdict(model.settings),
        selection=selection,
    )
    sizes = {"training examples": len(data[0])}
    if data[1] is not None:
        sizes["corpus passages"] = len(data[1])
    arguments = {"run": asdict(run), "training": args.to_dict()}
    write_report(args.output_dir, trainer.state.log_history, arguments, sizes, seconds)
