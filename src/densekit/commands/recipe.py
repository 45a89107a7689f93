"""``densekit recipe``: BM25, zero-shot, mined negatives, fine-tuning and evaluation.

``densekit recipe scifact`` runs on the bundled SciFact data; ``--data_dir DIR`` on any
BEIR-layout folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/train.tsv`` and optionally
``qrels/dev.tsv`` and ``qrels/test.tsv``). Every knob is a flag, or comes from ``--config``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from densekit.commands import run_guarded
from densekit.recipes.config import add_flags, build_config
from densekit.recipes.pipeline import run_recipe


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densekit recipe", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", choices=["scifact"], help="the bundled data set")
    parser.add_argument("--config", help="YAML or JSON file of recipe settings")
    parser.add_argument("--quick", action="store_true", help="a subset, in a few minutes")
    parser.add_argument("--bf16", action="store_true", help="same as --precision bf16")
    parser.add_argument(
        "--overwrite", action="store_true", help="run again into a finished recipe's folder"
    )
    add_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO
    )
    if args.bf16:
        args.precision = "bf16"
    run_recipe(build_config(args), quick=args.quick, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
