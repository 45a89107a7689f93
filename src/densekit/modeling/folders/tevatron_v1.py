"""A Tevatron v1 folder: the backbone plus ``pooler.pt`` and ``pooler_config.json``.

Tevatron v1 (``--add_pooler``) saved a linear projection as ``pooler.pt`` (a torch state dict:
``linear_q``, and ``linear_p`` which is the same layer unless untied) and ``pooler_config.json``
(``input_dim``, ``output_dim``, ``tied``, ``normalize``); the projection applies to the [CLS]
state. Its sizes are the weights' own, so flags cannot change them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from densekit.errors import ConfigError
from densekit.modeling import st_format
from densekit.modeling.folders.base import ModelFolder, local_folder

POOLER_WEIGHTS = "pooler.pt"
POOLER_CONFIG = "pooler_config.json"


def read_pooler(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(settings, nn.Linear state dict)`` of the Tevatron v1 pooler in ``folder``.

    The weights load with ``torch.load(weights_only=True)``: tensors only, no code runs.
    """
    weights, config_file = Path(folder) / POOLER_WEIGHTS, Path(folder) / POOLER_CONFIG
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


class TevatronV1Folder:
    """A Tevatron v1 model trained with ``--add_pooler`` (tied or untied towers)."""

    name = "tevatron-v1"
    looks_for = POOLER_WEIGHTS

    def matches(self, path: str) -> bool:
        folder = Path(path)
        return (folder / POOLER_WEIGHTS).is_file() and (folder / POOLER_CONFIG).is_file()

    def read(self, path: str) -> ModelFolder:
        pooler, state = read_pooler(path)
        # sentence-transformers files beside the pooler still give lengths and prompts.
        st_settings = st_format.read_settings(path)
        settings = {k: v for k, v in st_settings.items() if not k.startswith("projection")}
        settings.update({k: v for k, v in pooler.items() if not k.startswith("projection")})
        pinned = {k: v for k, v in pooler.items() if k.startswith("projection")}
        return local_folder(path, self.name, settings, pinned, lambda: dict(state))
