"""``densekit train-reranker``: train a cross-encoder on any training file densekit reads.

A separate command rather than ``densekit train --model_type reranker``: most of the
bi-encoder's flags — pooling, normalize, temperature, cross-device negatives, GradCache,
Matryoshka, query/passage towers and their two max lengths — mean nothing for a model that reads
query and passage as one sequence, and a flag that parses but does nothing misleads. This command
takes only what a cross-encoder uses: groups of 1 positive + n negatives
(``--train_group_size``, FlagEmbedding's name), one ``--max_len`` for the pair (FlagEmbedding's
``--query_max_len`` + ``--passage_max_len`` add up to it; Tevatron's ``--rerank_max_len`` is the
same), ``--loss listwise|bce|distill`` and the HF Trainer's usual flags.

Data: Tevatron v1/v2 (with ``--corpus_path`` for ids), FlagEmbedding/PaddleNLP (``pos_scores``/
``neg_scores`` feed ``--loss distill``), or a file ``densekit mine`` wrote over a BEIR corpus.
Bad input is one line and exit 2, before anything is written.

As ``densekit train``: ``--lora`` (adapters + the classification head; merged into the weights at
the final save, so the folder stays a plain cross-encoder) or ``--bitfit`` (biases + the head),
``--gradient_checkpointing``, and evaluation during training: ``--eval_run`` (a first-stage run,
e.g. BM25's) ``--eval_queries --eval_qrels`` with the passages from ``--corpus_path``: each judged
query's top ``--eval_depth`` hits are reranked exactly (every pair scored) and nDCG@10 etc. are
logged; ``--load_best_model_at_end`` keeps the best checkpoint by ``--metric_for_best_model``
(default nDCG@10). The output folder gets a model card (``README.md``), ``report.md`` and
``training_curves.png``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from densekit import precision
from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.errors import ConfigError

if TYPE_CHECKING:
    from densekit.training.reranker_trainer import RerankerRun

# the names of densekit.modeling.reranker_losses (RERANKER_LOSSES, ALIASES) and of
# densekit.modeling.reranker.ACTIVATIONS, here so that --help loads no torch (a test holds it)
LOSSES = ("listwise", "bce", "distill")
LOSS_ALIASES = ("ce", "cross_entropy", "kl", "pointwise")
ACTIVATIONS = ("identity", "sigmoid", "tanh")
FINE_TUNE_TYPES = ("full", "sft", "lora", "bitfit")  # densekit.modeling.reranker's, sft = full


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("densekit train-reranker", __doc__)
    add = parser.add_argument
    add("--model_name_or_path", "--model", required=True, help="backbone or cross-encoder folder")
    add("--dataset_path", "--train_data", "--train_dir", nargs="+", required=True,
        help="training jsonl file(s) or folder(s), any format densekit reads")  # fmt: skip
    add("--corpus_path", help="corpus for passages given by id (Tevatron v2, densekit mine)")
    add("--output_dir", required=True, help="where the reranker and checkpoints are saved")
    add("--overwrite_output_dir", action="store_true", help="allow a non-empty --output_dir")
    add("--train_group_size", "--train_n_passages", type=int, default=8,
        help="passages per query: 1 positive + n-1 negatives (default 8)")  # fmt: skip
    add("--max_len", "--rerank_max_len", "--max_length", type=int, default=None,
        help="max tokens of the (query, passage) pair (default 512, or the two below summed)")  # fmt: skip
    add("--query_max_len", type=int, help="FlagEmbedding's: added to --passage_max_len")
    add("--passage_max_len", type=int, help="FlagEmbedding's: added to --query_max_len")
    losses = sorted([*LOSSES, *LOSS_ALIASES])
    add("--loss", default="listwise", choices=losses,
        help="listwise (default), bce or distill; ce/cross_entropy = listwise, kl = distill, "
        "pointwise = bce")  # fmt: skip
    add("--distill_temperature", type=float, default=1.0, help="softmax temperature of distill")
    add("--activation", choices=sorted(ACTIVATIONS),
        help="applied to scores (and by ST's CrossEncoder); default sigmoid for bce, else identity")  # fmt: skip
    add("--query_prefix", "--query_instruction_for_rerank", default="",
        help="text put before each query (default: none)")  # fmt: skip
    add("--passage_prefix", "--passage_instruction_for_rerank", default="",
        help="text put before each passage (default: none)")  # fmt: skip
    add("--max_example_num_per_dataset", type=int, help="cap on records read per file")
    add("--positive_sampling", choices=("grade", "uniform"), default="grade",
        help="grade (default): a record's positive is drawn in proportion to its pos_grades "
        "where it has them; uniform: every positive alike")  # fmt: skip
    add("--learning_rate", type=float, default=2e-5, help="peak AdamW learning rate")
    add("--head_learning_rate", type=float,
        help="peak learning rate of the head (pooler, classifier) when it starts at random, "
        "e.g. 100x --learning_rate from a retriever or a language model (default: the same)")  # fmt: skip
    add("--weight_decay", type=float, default=0.0, help="AdamW weight decay")
    add("--warmup_steps", type=float, default=0, help="steps, or a fraction of all steps if < 1")
    add("--warmup_ratio", type=float, help="fraction of all steps (older transformers' flag)")
    add("--num_train_epochs", type=float, default=1.0, help="passes over the training data")
    add("--max_steps", type=int, default=-1, help="stop after this many steps (-1: epochs decide)")
    add("--per_device_train_batch_size", type=int, default=8, help="queries per device and step")
    add("--gradient_accumulation_steps", type=int, default=1, help="batches per optimizer step")
    add("--gradient_checkpointing", "--recompute", action="store_true",
        help="recompute activations in backward (less memory, slower)")  # fmt: skip
    add("--bf16", action="store_true", help="bf16 mixed precision (same as --precision bf16)")
    add("--precision", default="fp32", choices=precision.PRECISIONS,
        help="auto: bf16 where the device does it natively, else fp32")  # fmt: skip
    add("--save_steps", type=int, default=500, help="save a checkpoint every N steps")
    add("--save_total_limit", type=int, help="checkpoints kept (default: all)")
    add("--logging_steps", type=int, default=10, help="log the loss every N steps")
    add("--seed", type=int, default=42, help="seed of sampling and initialisation")
    add("--dataloader_num_workers", type=int, default=0, help="data loading processes")
    add("--resume_from_checkpoint", help="checkpoint folder to continue from")
    # which parameters train (densekit train's flags)
    add("--fine_tune_type", choices=FINE_TUNE_TYPES, default="full",
        help="full (default; sft = full), lora (adapters + head) or bitfit (biases + head)")  # fmt: skip
    add("--lora", action="store_true", help="same as --fine_tune_type lora")
    add("--bitfit", action="store_true", help="same as --fine_tune_type bitfit")
    add("--lora_r", type=int, default=8, help="LoRA rank")
    add("--lora_alpha", type=int, default=32, help="LoRA alpha")
    add("--lora_dropout", type=float, default=0.1, help="LoRA dropout")
    add("--lora_target_modules", nargs="+",
        help="modules given adapters, comma list or words (default: per model family)")  # fmt: skip
    # evaluation during training
    add("--eval_run", help="first-stage run (TREC) whose top hits are reranked at each evaluation")
    add("--eval_queries", help="queries of --eval_run (jsonl/tsv any reader takes)")
    add("--eval_qrels", help="qrels of the evaluation")
    add("--eval_depth", type=int, default=100, help="hits reranked per query (default 100)")
    add("--eval_metrics", default="ndcg@10,mrr@10", help="metrics logged as eval_<name>")
    add("--eval_strategy", choices=("no", "steps", "epoch"), default=None,
        help="when to evaluate (default: epoch with --eval_run, else no)")  # fmt: skip
    add("--eval_steps", type=float, help="steps between evaluations (< 1: a fraction of all)")
    add("--per_device_eval_batch_size", type=int, default=32, help="pairs per scoring batch")
    add("--load_best_model_at_end", action="store_true",
        help="keep the best evaluated checkpoint (saves one at each evaluation)")  # fmt: skip
    add("--metric_for_best_model", default=None,
        help="metric --load_best_model_at_end maximizes (default: the first of --eval_metrics)")  # fmt: skip
    return parser


def fine_tune_type(args: argparse.Namespace) -> str:
    """``--fine_tune_type`` with ``--lora`` / ``--bitfit`` folded in (one of them at most)."""
    chosen = {"sft": "full"}.get(args.fine_tune_type, args.fine_tune_type)
    for flag in ("lora", "bitfit"):
        if getattr(args, flag):
            if chosen not in ("full", flag):
                raise ConfigError(f"--{flag} contradicts --fine_tune_type {chosen}")
            chosen = flag
    return chosen


def evaluation_keywords(args: argparse.Namespace) -> dict:
    """The HF evaluation arguments; with --load_best_model_at_end a checkpoint is saved at
    each evaluation (HF requires the save and eval schedules to agree)."""
    strategy = args.eval_strategy or ("epoch" if args.eval_run else "no")
    out: dict = {"eval_strategy": strategy}
    if args.eval_steps is not None:
        if args.eval_steps <= 0:
            raise ConfigError(f"--eval_steps must be positive, got {args.eval_steps}")
        out["eval_steps"] = args.eval_steps if args.eval_steps < 1 else int(args.eval_steps)
    if args.load_best_model_at_end:
        out["load_best_model_at_end"] = True
        out["save_strategy"] = strategy
        if strategy == "steps":
            out["save_steps"] = out.get("eval_steps", args.logging_steps)
            out.setdefault("eval_steps", out["save_steps"])
    if args.metric_for_best_model:
        out["metric_for_best_model"] = args.metric_for_best_model
    return out


def pair_length(args: argparse.Namespace) -> int:
    """One max length for the pair: ``--max_len``, else FlagEmbedding's two lengths summed."""
    if args.max_len is not None:
        if args.query_max_len is not None or args.passage_max_len is not None:
            raise ConfigError("give --max_len, or --query_max_len + --passage_max_len, not both")
        return args.max_len
    if args.query_max_len is None and args.passage_max_len is None:
        return 512
    return (args.query_max_len or 32) + (args.passage_max_len or 128)


def to_run(args: argparse.Namespace) -> RerankerRun:
    """The parsed flags as the library's run description (nothing below takes a Namespace)."""
    from densekit.training.reranker_trainer import RerankerRun

    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "save_steps"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.max_steps == 0 or args.num_train_epochs <= 0:
        raise ConfigError("--max_steps 0 / --num_train_epochs <= 0 would train nothing")
    bf16 = precision.resolve("bf16" if args.bf16 else args.precision) == "bf16"
    training = {
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        "warmup_steps": args.warmup_ratio if args.warmup_ratio is not None else args.warmup_steps,
        "num_train_epochs": args.num_train_epochs,
        "max_steps": args.max_steps,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "gradient_checkpointing": args.gradient_checkpointing,
        "bf16": bf16,
        "save_steps": args.save_steps,
        "save_total_limit": args.save_total_limit,
        "logging_steps": args.logging_steps,
        "seed": args.seed,
        "dataloader_num_workers": args.dataloader_num_workers,
    }
    training.update(evaluation_keywords(args))
    if args.resume_from_checkpoint:
        training["resume_from_checkpoint"] = args.resume_from_checkpoint
    targets = ",".join(args.lora_target_modules) if args.lora_target_modules else None
    return RerankerRun(
        model_name_or_path=args.model_name_or_path,
        dataset_path=args.dataset_path,
        corpus_path=args.corpus_path,
        output_dir=args.output_dir,
        overwrite_output_dir=args.overwrite_output_dir or bool(args.resume_from_checkpoint),
        train_group_size=args.train_group_size,
        max_len=pair_length(args),
        loss=args.loss,
        distill_temperature=args.distill_temperature,
        activation=args.activation,
        query_prefix=args.query_prefix,
        passage_prefix=args.passage_prefix,
        max_examples_per_file=args.max_example_num_per_dataset,
        positive_sampling=args.positive_sampling,
        fine_tune_type=fine_tune_type(args),
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        lora_target_modules=targets,
        eval_run=args.eval_run,
        eval_queries=args.eval_queries,
        eval_qrels=args.eval_qrels,
        eval_metrics=args.eval_metrics,
        eval_depth=args.eval_depth,
        eval_batch_size=args.per_device_eval_batch_size,
        head_learning_rate=args.head_learning_rate,
        training=training,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from densekit.training.reranker_trainer import train_reranker

    trainer = train_reranker(to_run(args))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if losses:
        print(
            f"trained {trainer.state.global_step} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}"
        )
    best = trainer.state.best_model_checkpoint
    if trainer.args.load_best_model_at_end and best:
        metric = trainer.args.metric_for_best_model
        print(f"kept {best.rsplit('/', 1)[-1]}: {metric} {trainer.state.best_metric:.4f}")
    print(f"saved {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
