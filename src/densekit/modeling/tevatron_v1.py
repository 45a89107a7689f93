"""What a Tevatron v1 model folder carries besides the backbone, read into densekit's settings.

Tevatron v1 (``--add_pooler``) saved a linear projection as ``pooler.pt`` (a torch state dict:
``linear_q``, and ``linear_p`` which is the same layer unless untied) and ``pooler_config.json``
(``input_dim``, ``output_dim``, ``tied``, ``normalize``); the projection applies to the [CLS]
state. Its ``--passage_field_separator`` could name a tokenizer attribute (``sep_token``)
instead of giving the text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from densekit.errors import ConfigError

POOLER_WEIGHTS = "pooler.pt"
POOLER_CONFIG = "pooler_config.json"
_TOKEN_ATTRIBUTE = re.compile(r"^(bos|eos|sep|cls|pad|unk|mask)_token$")


def read_pooler(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """``(settings, nn.Linear state dict)`` of a Tevatron v1 pooler in ``folder``, else None.

    The weights load with ``torch.load(weights_only=True)``: tensors only, no code runs.
    """
    folder = Path(folder)
    weights, config_file = folder / POOLER_WEIGHTS, folder / POOLER_CONFIG
    if not (weights.is_file() and config_file.is_file()):
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{weights}: not a readable Tevatron pooler ({exc})") from None
    if "linear_q.weight" not in state:
        raise ConfigError(f"{weights}: expected linear_q weights (a Tevatron v1 DensePooler)")
    query = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("linear_q.")}
    passage = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("linear_p.")}
    if passage and any(not torch.equal(query[k], passage[k]) for k in query):
        raise ConfigError(
            f"{weights}: untied query/passage poolers (tied=false) are not supported; "
            "densekit projects queries and passages with one layer"
        )
    out_dim, in_dim = query["weight"].shape
    settings = {
        "pooling": "cls",
        "projection_in_dim": int(in_dim),
        "projection_out_dim": int(out_dim),
        "normalize": bool(config.get("normalize", False)),
    }
    return settings, query


def separator(value: str | None, tokenizer_path: str) -> str | None:
    """Tevatron's ``getattr(tokenizer, value, value)``: ``sep_token`` etc. become the token."""
    if value is None or not _TOKEN_ATTRIBUTE.match(value):
        return value
    from densekit.modeling.encoder import load_tokenizer

    token = getattr(load_tokenizer(tokenizer_path), value, None)
    if not token:
        raise ConfigError(f"--passage_field_separator {value}: this tokenizer has no {value}")
    return str(token)
