"""``densekit jax-train``: train a bi-encoder on the JAX path (TPU, GPU or CPU) with the flags
of ``densekit train``.

Also ``python -m densekit.jax_train`` (Tevatron's ``tevatron.driver.jax_train`` command lines run
with the module name swapped; its ``--dtype bfloat16`` means bf16 compute). Data parallel over
every device JAX sees, negatives shared across all of them; multi-host when
``JAX_COORDINATOR_ADDRESS`` is set. Needs ``pip install 'densekit[jax]'``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from densekit.commands import run_guarded
from densekit.commands._help import TRAIN_FLAG_SOURCES, Formatter, cached_help, plain
from densekit.errors import ConfigError

if TYPE_CHECKING:
    from transformers import HfArgumentParser

# the modules whose text defines the flags: --help is rendered again when one changes
HELP_SOURCES = [*TRAIN_FLAG_SOURCES, __name__]

_DTYPES = {"float32": "fp32", "bfloat16": "bf16"}


def build_parser() -> HfArgumentParser:
    """The train command's parser (every flag and alias of ``densekit train``)."""
    from densekit.arguments import build_parser as build_hf_parser

    parser = build_hf_parser()
    parser.prog = "densekit jax-train"
    parser.description = plain(__doc__ or "").strip()
    parser.formatter_class = Formatter
    return parser


def split_precision(argv: list[str]) -> tuple[list[str], str]:
    """``argv`` without Tevatron's JAX ``--dtype``, and the precision asked for (``auto`` when
    none of ``--bf16``, ``--precision`` or ``--dtype`` is given)."""
    scan = argparse.ArgumentParser(add_help=False)
    scan.add_argument("--dtype", default=None)
    scan.add_argument("--bf16", nargs="?", const="true", default=None)
    scan.add_argument("--precision", default=None)
    found, _ = scan.parse_known_args(argv)
    rest, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--dtype":
            skip = True
        elif not word.startswith("--dtype="):
            rest.append(word)
    if found.dtype is not None and found.dtype not in _DTYPES:
        raise ConfigError(f"--dtype {found.dtype}: expected float32 or bfloat16")
    if found.bf16 is not None and found.bf16.lower() in ("true", "1", "yes"):
        return rest, "bf16"
    if found.precision:
        return rest, found.precision
    return rest, _DTYPES.get(found.dtype, "auto")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(flag in argv for flag in ("-h", "--help")):
        # building the parser imports transformers' TrainingArguments (torch, peft): ~6 s
        text = cached_help("jax-train", HELP_SOURCES, lambda: build_parser().format_help())
        print(text, end="")
        return 0
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO
    )
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it writes
    from densekit.jax import require_jax

    require_jax()
    from densekit.jax.run import JaxRun

    argv, precision = split_precision(argv)
    from densekit.arguments import parse_train_args

    model_args, data_args, training_args = parse_train_args(argv)
    JaxRun(model_args, data_args, training_args, precision).train()
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
