"""``densekit recipe``: BM25, zero-shot, mined negatives, fine-tuning and evaluation.

``densekit recipe scifact`` runs on the bundled SciFact data; ``--data_dir DIR`` on any
BEIR-layout folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/train.tsv`` and optionally
``qrels/dev.tsv`` and ``qrels/test.tsv``). Every knob is a flag, or comes from ``--config``.

Stages, with the times measured on the bundled SciFact data with the defaults on 2 AVX2 cores
(AMD EPYC, fp32; docs/benchmarks.md section 14):
  1. BM25 run over the dev and training queries (about 3 s).
  2. Zero-shot run: encode the corpus with the starting model and search (about 7.5 min).
  3. Mine hard negatives from the fused BM25 + zero-shot run (--mine_source) and
     4. fine-tune the model on them (mine + fine-tune about 23 min).
  5. Encode the corpus with the fine-tuned model, search, fuse with BM25 and evaluate every
     system on the dev split, with paired significance tests (about 7 min).
In all about 35 min and 3.9 GiB of memory. --quick runs a subset (256 training and 100 dev
queries, 1,500 passages, 1 epoch) in a few minutes.
"""

from __future__ import annotations

import argparse
import logging
import sys

from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.recipes.config import add_flags, build_config


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("densekit recipe", __doc__)
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
    from densekit.recipes.pipeline import run_recipe

    run_recipe(build_config(args), quick=args.quick, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
