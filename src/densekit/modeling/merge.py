"""Fold a LoRA checkpoint's adapters into a full model folder (``densekit merge-lora``).

The merged folder is a plain densekit (and sentence-transformers) model: no peft needed to use
it, and it encodes what the adapter checkpoint encodes.
"""

from __future__ import annotations

from pathlib import Path

from densekit.atomic import atomic_path
from densekit.errors import ConfigError
from densekit.modeling.encoder import ADAPTER_CONFIG, DenseEncoder, load_tokenizer


def merge_lora(checkpoint: str, output: str, overwrite: bool = False) -> None:
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
    with atomic_path(output, folder=True, overwrite=overwrite) as tmp:
        encoder.save_pretrained(tmp, tokenizer=load_tokenizer(checkpoint))
