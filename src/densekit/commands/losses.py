"""``densekit losses``: list the registered losses and what each computes."""

from __future__ import annotations

import argparse
import sys

from densekit.commands import run_guarded
from densekit.commands._help import new_parser


def build_parser() -> argparse.ArgumentParser:
    return new_parser("densekit losses", __doc__)


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    from densekit.modeling.losses import RetrievalLoss

    for name, text in RetrievalLoss.describe().items():
        print(f"{name:<12} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
