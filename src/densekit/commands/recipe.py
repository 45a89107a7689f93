"""``densekit recipe scifact``: BM25, zero-shot, mined negatives, fine-tuning and evaluation."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from densekit.commands import run_guarded
from densekit.recipes.scifact import RecipeConfig, run_scifact


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densekit recipe", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["scifact"])
    parser.add_argument("--output_dir", default="runs/scifact")
    parser.add_argument(
        "--data_dir", default=None, help="BEIR-layout folder (default: the bundled SciFact)"
    )
    parser.add_argument("--model_name_or_path", default=None)
    parser.add_argument("--quick", action="store_true", help="a subset, in a few minutes")
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast for training and encoding"
    )
    parser.add_argument("--epochs", type=float, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO
    )
    config = RecipeConfig(output_dir=Path(args.output_dir), model=args.model_name_or_path)
    config.bf16 = args.bf16
    if args.data_dir:
        config.data_dir = Path(args.data_dir)
    if args.epochs is not None:
        config.epochs = args.epochs
    run_scifact(config, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
