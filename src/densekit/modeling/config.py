"""The encoder's own settings, and where their defaults come from.

Precedence: values the folder's weights dictate (a Tevatron v1 pooler's sizes, untied towers),
then a flag given on the command line, then the model folder's ``densekit_config.json``, else its
sentence-transformers files (pooling, normalization, max length, prompts, Dense) or Tevatron v1
pooler config, then densekit's fallbacks (Tevatron's: cls pooling, no normalization, lengths
32/128). Which file a folder's settings come from is its kind's business (``modeling.folders``);
the merge is :func:`resolve_config`, used by the torch and JAX encoders alike.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from densekit.data.formatting import TextFormat
from densekit.errors import ConfigError
from densekit.modeling.folders import CONFIG_NAME, ModelFolder, read_folder
from densekit.modeling.tokenizer import field_separator


@dataclass
class EncoderConfig(TextFormat):
    """Everything besides weights that decides what vector a text becomes.

    It is a :class:`TextFormat`: prefixes and the title separator travel with the model, so
    training, ``encode``, ``dense_run``, the recipe and checkpoint evaluation format alike.
    """

    pooling: str = "cls"
    normalize: bool = False
    temperature: float = 1.0
    query_max_len: int = 32
    passage_max_len: int = 128
    append_eos_token: bool = False
    padding_side: str = "right"
    untie_encoder: bool = False
    projection_in_dim: int | None = None
    projection_out_dim: int | None = None
    # torch.nn activation after the projection (sentence-transformers Dense); None: identity
    projection_activation: str | None = None
    fine_tune_type: str = "full"
    base_model_name_or_path: str | None = None

    @property
    def has_pooler(self) -> bool:
        return self.projection_out_dim is not None

    def save(self, folder: str | Path) -> None:
        (Path(folder) / CONFIG_NAME).write_text(
            json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8"
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def folder_defaults(path: str | Path) -> dict[str, Any]:
    """Settings a model folder carries (its kind decides which of its files say them)."""
    return dict(read_folder(path).settings)


# Tevatron's eos, FlagEmbedding's last_token and Trove's first_token/last_token included.
POOLING_ALIASES = {
    "cls": "cls",
    "first_token": "cls",
    "mean": "mean",
    "last": "last",
    "eos": "last",
    "last_token": "last",
}


def pooling_name(name: str) -> str:
    """densekit's pooling for any accepted spelling (Tevatron's ``eos`` is ``last``)."""
    if name not in POOLING_ALIASES:
        raise ConfigError(f"--pooling {name!r}: expected cls, mean, last or eos")
    return POOLING_ALIASES[name]


def resolve_config(source: str | Path | ModelFolder, **given: Any) -> EncoderConfig:
    """Merge flags given (``None`` = not given) over the folder's settings and the fallbacks."""
    folder = source if isinstance(source, ModelFolder) else read_folder(source)
    values = dict(folder.settings)
    values.update({k: v for k, v in given.items() if v is not None})
    values.update(folder.pinned)
    values["pooling"] = pooling_name(values.get("pooling", "cls"))
    if "temperature" not in values:
        values["temperature"] = 0.05 if values.get("normalize") else 1.0
    if values.get("passage_field_separator") is not None:
        values["passage_field_separator"] = field_separator(
            values["passage_field_separator"], folder.tokenizer_path
        )
    return EncoderConfig.from_dict(values)
