"""``densekit merge-lora``: fold a LoRA checkpoint's adapters into a full model folder."""

from __future__ import annotations

import argparse
import sys

from densekit.commands import run_guarded
from densekit.commands._help import new_parser


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("densekit merge-lora", __doc__)
    parser.add_argument(
        "--lora_name_or_path", "--checkpoint", required=True, help="LoRA checkpoint"
    )
    parser.add_argument("--output_dir", required=True, help="where the merged model goes")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier merge")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from densekit.atomic import check_target
    from densekit.modeling.merge import merge_lora

    check_target(args.output_dir, folder=True, overwrite=args.overwrite)
    merge_lora(args.lora_name_or_path, args.output_dir, overwrite=args.overwrite)
    print(f"densekit merge-lora: merged model written to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
