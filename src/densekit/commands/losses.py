"""``densekit losses``: list the registered losses and what each computes."""

from __future__ import annotations

import argparse
import sys

from densekit.commands import run_guarded
from densekit.modeling.losses import RetrievalLoss


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="densekit losses", description=__doc__.splitlines()[0])


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    for name, text in RetrievalLoss.describe().items():
        print(f"{name:<12} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
