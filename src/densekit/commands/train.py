"""``densekit train``: train a bi-encoder from Tevatron, PaddleNLP or FlagEmbedding flags.

Also ``python -m densekit.train``, so it runs under ``torchrun -m densekit.train``,
``python -m torch.distributed.launch``, ``accelerate launch -m densekit.train`` and
``deepspeed --module densekit.train``. A single ``.json``/``.yaml`` file may replace the flags.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from densekit.commands import run_guarded
from densekit.commands._help import TRAIN_FLAG_SOURCES, Formatter, cached_help, plain

if TYPE_CHECKING:
    from transformers import HfArgumentParser

    from densekit.arguments import RetrievalTrainingArguments
    from densekit.evaluation.exact import ExactEvaluator

# the modules whose text defines the flags: --help is rendered again when one changes
HELP_SOURCES = [*TRAIN_FLAG_SOURCES, __name__]


def build_parser() -> HfArgumentParser:
    """The three argument dataclasses' parser (``--help`` lists every flag and alias)."""
    from densekit.arguments import build_parser as build_hf_parser

    parser = build_hf_parser()
    parser.prog = "densekit train"
    parser.description = plain(__doc__ or "").strip()
    parser.formatter_class = Formatter
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(flag in argv for flag in ("-h", "--help")):
        # building the parser imports transformers' TrainingArguments (torch, peft): ~6 s
        print(cached_help("train", HELP_SOURCES, lambda: build_parser().format_help()), end="")
        return 0
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if int(os.environ.get("RANK", 0)) == 0 else logging.WARNING,
    )
    from densekit.arguments import parse_train_args

    model_args, data_args, training_args = parse_train_args(argv)
    from densekit.training.run import train

    train(model_args, data_args, training_args, evaluator=build_evaluator(training_args))
    return 0


def build_evaluator(args: RetrievalTrainingArguments) -> ExactEvaluator | None:
    """The exact evaluator named by ``--eval_corpus/--eval_queries/--eval_qrels`` (read now, so
    bad files fail before training starts)."""
    from densekit.evaluation.exact import ExactEvaluator

    if not args.exact_eval:
        return None
    return ExactEvaluator.from_files(
        args.eval_corpus,
        args.eval_queries,
        args.eval_qrels,
        metrics=args.eval_metrics.split(","),
        depth=args.eval_depth,
        batch_size=args.per_device_eval_batch_size,
        bf16=args.bf16,
    )


if __name__ == "__main__":
    sys.exit(run_guarded(main))
