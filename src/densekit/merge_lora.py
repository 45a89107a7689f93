"""``densekit merge-lora``: fold a LoRA checkpoint's adapters into a full model folder.

The merged folder is a plain densekit (and sentence-transformers) model: no peft needed to use
it, and it encodes what the adapter checkpoint encodes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from densekit.atomic import atomic_path
from densekit.errors import ConfigError
from densekit.modeling.encoder import ADAPTER_CONFIG, DenseEncoder, load_tokenizer


def merge_lora(checkpoint: str, output: str) -> None:
    """Load ``checkpoint`` (base + adapters), merge the adapters and save a full model."""
    folder = Path(checkpoint)
    towers = [folder, folder / "query_model", folder / "passage_model"]
    if not any((t / ADAPTER_CONFIG).is_file() for t in towers):
        raise ConfigError(f"{checkpoint} holds no LoRA adapter ({ADAPTER_CONFIG})")
    encoder = DenseEncoder.from_pretrained(checkpoint)
    merged = {}
    for name in ("query_model", "passage_model"):
        model = getattr(encoder, name)
        if id(model) not in merged:
            merged[id(model)] = (
                model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
            )
        setattr(encoder, name, merged[id(model)])
    encoder.settings.fine_tune_type = "full"
    with atomic_path(output) as tmp:
        encoder.save_pretrained(tmp, tokenizer=load_tokenizer(checkpoint))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="densekit merge-lora", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--lora_name_or_path", "--checkpoint", required=True, help="LoRA checkpoint"
    )
    parser.add_argument("--output_dir", required=True, help="where the merged model goes")
    args = parser.parse_args(argv)
    merge_lora(args.lora_name_or_path, args.output_dir)
    print(f"densekit merge-lora: merged model written to {args.output_dir}")
    return 0


if __name__ == "__main__":
    from densekit.cli import run_guarded

    sys.exit(run_guarded(main))
