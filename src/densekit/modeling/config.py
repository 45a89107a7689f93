"""The encoder's own settings, and where their defaults come from.

Precedence: a flag given on the command line, then the model folder's ``densekit_config.json``,
then its sentence-transformers files (pooling, normalization, max length, prompts), then
densekit's fallbacks (Tevatron's: cls pooling, no normalization, lengths 32/128).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

CONFIG_NAME = "densekit_config.json"
_ST_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_lasttoken": "last",
}


@dataclass
class EncoderConfig:
    """Everything besides weights that decides what vector a text becomes."""

    pooling: str = "cls"
    normalize: bool = False
    temperature: float = 1.0
    query_prefix: str = ""
    passage_prefix: str = ""
    query_max_len: int = 32
    passage_max_len: int = 128
    append_eos_token: bool = False
    padding_side: str = "right"
    untie_encoder: bool = False
    projection_in_dim: int | None = None
    projection_out_dim: int | None = None
    fine_tune_type: str = "full"
    base_model_name_or_path: str | None = None

    @property
    def has_pooler(self) -> bool:
        return self.projection_out_dim is not None

    def save(self, folder: str | Path) -> None:
        (Path(folder) / CONFIG_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def folder_defaults(path: str | Path) -> dict[str, Any]:
    """Settings a model folder carries: densekit's config, else its sentence-transformers files."""
    folder = Path(path)
    if (folder / CONFIG_NAME).is_file():
        return json.loads((folder / CONFIG_NAME).read_text())
    out: dict[str, Any] = {}
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return out
    modules = json.loads(modules_file.read_text())
    for module in modules:
        kind = module.get("type", "")
        module_dir = folder / module.get("path", "")
        if kind.endswith("Pooling") and (module_dir / "config.json").is_file():
            pooling_cfg = json.loads((module_dir / "config.json").read_text())
            for key, mode in _ST_POOLING.items():
                if pooling_cfg.get(key):
                    out["pooling"] = mode
        elif kind.endswith("Normalize"):
            out["normalize"] = True
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        max_len = json.loads(st_config.read_text()).get("max_seq_length")
        if max_len:
            out["query_max_len"] = out["passage_max_len"] = int(max_len)
    prompts_file = folder / "config_sentence_transformers.json"
    if prompts_file.is_file():
        prompts = json.loads(prompts_file.read_text()).get("prompts") or {}
        if prompts.get("query"):
            out["query_prefix"] = prompts["query"]
        for name in ("document", "passage", "corpus"):
            if prompts.get(name):
                out["passage_prefix"] = prompts[name]
    return out


def resolve_config(path: str | Path, **given: Any) -> EncoderConfig:
    """Merge flags given (``None`` = not given) over the folder's settings and the fallbacks."""
    values = folder_defaults(path)
    values.update({k: v for k, v in given.items() if v is not None})
    if "temperature" not in values:
        values["temperature"] = 0.05 if values.get("normalize") else 1.0
    return EncoderConfig.from_dict(values)
