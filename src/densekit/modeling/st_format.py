"""sentence-transformers model folders: read their settings and write ours, in one place.

Reading covers the forms sentence-transformers 3 to 6 write (``pooling_mode_*`` booleans or
one ``pooling_mode`` string, ``max_seq_length`` in ``sentence_bert_config.json`` or only in the
tokenizer config, module type paths of every version, a ``Dense`` with any parameter-free
``torch.nn`` activation). A module densekit cannot reproduce is refused with one line rather than
silently encoded differently from ``SentenceTransformer``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from densekit.errors import ConfigError
from densekit.modeling.activations import activation_name, st_path

logger = logging.getLogger(__name__)

MODULES_FILE = "modules.json"
ROUTER_FILE = "router_config.json"
ST_QUERY_DIR = "st_query"
_ST = "sentence_transformers.models"
_MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")
DENSE_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# sentence-transformers pooling names (new string form and legacy boolean keys) -> densekit's.
_POOLING_NAMES = {"cls": "cls", "mean": "mean", "lasttoken": "last"}
_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_lasttoken": "lasttoken",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
}
# What ST's Dense builds when its config names no activation.
_ST_DEFAULT_ACTIVATION = "torch.nn.modules.activation.Tanh"
_TOKENIZER_LIMIT = 1_000_000  # tokenizers without a limit store a huge sentinel


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None


def _kind(module: dict[str, Any]) -> str:
    """The class name at the end of a module's type path, in any version's package layout."""
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def pooling_mode(config: dict[str, Any], source: Path) -> str:
    """densekit's pooling for a Pooling module config, or a ConfigError naming the mode."""
    mode = config.get("pooling_mode")
    if mode is None:
        active = [name for key, name in _LEGACY_KEYS.items() if config.get(key)]
        mode = active[0] if len(active) == 1 else active
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if not isinstance(mode, str) or mode not in _POOLING_NAMES:
        raise ConfigError(
            f"{source}: pooling {mode!r} is not supported by densekit (cls, mean, lasttoken)"
        )
    return _POOLING_NAMES[mode]


def _max_length(folder: Path, module_dir: Path) -> int | None:
    """``max_seq_length``, else the tokenizer's ``model_max_length`` (what ST 6 falls back to)."""
    for config in (module_dir / "sentence_bert_config.json", folder / "sentence_bert_config.json"):
        if config.is_file():
            value = _read_json(config).get("max_seq_length")
            if value:
                return int(value)
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.is_file():
        value = _read_json(tokenizer_config).get("model_max_length")
        if isinstance(value, int) and 0 < value < _TOKENIZER_LIMIT:
            return value
    return None


def _dense_settings(config: dict[str, Any], module_dir: Path) -> dict[str, Any]:
    source = module_dir / "config.json"
    if not config.get("bias", True):
        raise ConfigError(f"{source}: a Dense module without bias is not supported by densekit")
    if config.get("use_residual") or config.get("module_input_name", "sentence_embedding") != (
        "sentence_embedding"
    ):
        raise ConfigError(
            f"{source}: a Dense module with a residual or on token embeddings is not supported "
            "by densekit"
        )
    activation = config.get("activation_function", _ST_DEFAULT_ACTIVATION)
    return {
        "projection_in_dim": int(config["in_features"]),
        "projection_out_dim": int(config["out_features"]),
        "projection_activation": activation_name(activation, source),
    }


def read(path: str | Path) -> tuple[dict[str, Any], Path | None]:
    """A sentence-transformers folder's encoder settings and its ``Dense`` module's folder.

    Empty settings and no folder for a folder without ``modules.json`` (plain Hugging Face).
    """
    folder = Path(path)
    if not (folder / MODULES_FILE).is_file():
        return {}, None
    out: dict[str, Any] = {}
    dense: Path | None = None
    modules = _read_json(folder / MODULES_FILE)
    for position, module in enumerate(modules):
        kind = _kind(module)
        module_dir = folder / module.get("path", "")
        if kind == "Transformer" and position == 0:
            length = _max_length(folder, module_dir)
            if length:
                out["query_max_len"] = out["passage_max_len"] = length
        elif kind == "Pooling":
            config = _read_json(module_dir / "config.json")
            out["pooling"] = pooling_mode(config, module_dir / "config.json")
            out["st_include_prompt"] = bool(config.get("include_prompt", True))
        elif kind == "Dense" and dense is None:
            out.update(_dense_settings(_read_json(module_dir / "config.json"), module_dir))
            dense = module_dir
        elif kind == "Normalize":
            out["normalize"] = True
        else:
            raise ConfigError(
                f"{folder / MODULES_FILE}: module {position} ({module.get('type')}) is not "
                "supported by densekit: encode this model with sentence-transformers"
            )
    out.update(_prompts(folder))
    if out.pop("st_include_prompt", True) is False and (
        out.get("query_prefix") or out.get("passage_prefix")
    ):
        raise ConfigError(
            f"{folder}: Pooling excludes prompt tokens (include_prompt false); densekit pools them"
        )
    return out, dense


def read_settings(path: str | Path) -> dict[str, Any]:
    """Encoder settings from a sentence-transformers folder (empty for a plain HF folder)."""
    return read(path)[0]


def _prompts(folder: Path) -> dict[str, str]:
    config = folder / "config_sentence_transformers.json"
    if not config.is_file():
        return {}
    prompts = _read_json(config).get("prompts") or {}
    out = {}
    if prompts.get("query"):
        out["query_prefix"] = prompts["query"]
    for name in ("document", "passage", "corpus"):
        if prompts.get(name):
            out["passage_prefix"] = prompts[name]
    return out


def load_dense(folder: str | Path) -> dict[str, torch.Tensor]:
    """The ``Dense`` module's weights as ``nn.Linear`` state (``weight``, ``bias``)."""
    folder = Path(folder)
    for name in DENSE_WEIGHTS:
        if (folder / name).is_file():
            state = (
                load_file(str(folder / name))
                if name.endswith(".safetensors")
                else torch.load(folder / name, map_location="cpu", weights_only=True)
            )
            return {k.removeprefix("linear."): v for k, v in state.items()}
    raise ConfigError(f"{folder}: Dense module without weights ({' or '.join(DENSE_WEIGHTS)})")


def _module(idx: int, path: str, kind: str) -> dict[str, Any]:
    return {
        "idx": idx,
        "name": str(idx),
        "path": path,
        "type": f"sentence_transformers.models.{kind}",
    }


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def write_files(
    folder: str | Path,
    settings: Any,
    hidden_size: int,
    pooler: torch.nn.Linear | None,
    tied: bool = True,
) -> None:
    """sentence-transformers module files for an encoder saved in ``folder``.

    A tied encoder with one length gets the plain layout (Transformer at the root). Untied
    towers, or one tower with different query and passage lengths (ST keeps one
    ``max_seq_length`` per Transformer), get a ``Router``: ``encode_query`` runs the query
    Transformer, ``encode_document`` the passage one. For different lengths the query route is a
    copy of the weights in ``st_query/`` (the price of ST's one-length Transformer). LoRA
    adapter folders get no ST files: ``densekit merge-lora`` turns them into a full model.
    """
    folder = Path(folder)
    if settings.fine_tune_type == "lora":
        logger.info(
            "%s: LoRA adapters are not a sentence-transformers model; "
            "`densekit merge-lora` writes one",
            folder,
        )
        return
    if tied and settings.query_max_len == settings.passage_max_len:
        modules = [_module(0, "", "Transformer")]
        _write_json(folder / "sentence_bert_config.json", _length(settings.passage_max_len))
    else:
        routes = _router_routes(folder, settings, tied)
        modules = [_module(0, "", "Router")]
        _write_json(
            folder / ROUTER_FILE,
            {
                "types": {path: f"{_ST}.Transformer" for path in routes.values()},
                "structure": {route: [path] for route, path in routes.items()},
                "parameters": {"default_route": "document", "allow_empty_key": True},
            },
        )
    _write_head(folder, modules, settings, hidden_size, pooler)


def _length(max_len: int) -> dict[str, Any]:
    return {"max_seq_length": max_len, "do_lower_case": False}


def _router_routes(folder: Path, settings: Any, tied: bool) -> dict[str, str]:
    """Route -> Transformer folder, each with its own length (and tokenizer files)."""
    if tied:  # one set of weights, two lengths: the query route gets a copy
        copy = folder / ST_QUERY_DIR
        copy.mkdir(exist_ok=True)
        for item in folder.iterdir():
            if item.is_file() and (item.name in _MODEL_FILES or item.name.startswith("tokenizer")):
                shutil.copy2(item, copy / item.name)
        routes = {"query": ST_QUERY_DIR, "document": ""}
    else:
        for tower in ("query_model", "passage_model"):
            for item in folder.iterdir():
                if item.is_file() and item.name.startswith(
                    ("tokenizer", "special_tokens", "vocab")
                ):
                    shutil.copy2(item, folder / tower / item.name)
        routes = {"query": "query_model", "document": "passage_model"}
    lengths = {"query": settings.query_max_len, "document": settings.passage_max_len}
    for route, path in routes.items():
        _write_json(folder / path / "sentence_bert_config.json", _length(lengths[route]))
    return routes


def _write_head(
    folder: Path, modules: list, settings: Any, hidden_size: int, pooler: torch.nn.Linear | None
) -> None:
    """Pooling, optional Dense and Normalize after the Transformer(s), plus prompts."""
    pooling_dir = folder / "1_Pooling"
    pooling_dir.mkdir(exist_ok=True)
    legacy = {key: False for key in _LEGACY_KEYS}
    st_name = {v: k for k, v in _POOLING_NAMES.items()}[settings.pooling]
    legacy[next(k for k, v in _LEGACY_KEYS.items() if v == st_name)] = True
    _write_json(
        pooling_dir / "config.json",
        {"word_embedding_dimension": hidden_size, "include_prompt": True, **legacy},
    )
    modules.append(_module(1, "1_Pooling", "Pooling"))
    if pooler is not None:
        dense_dir = folder / "2_Dense"
        dense_dir.mkdir(exist_ok=True)
        _write_json(
            dense_dir / "config.json",
            {
                "in_features": pooler.in_features,
                "out_features": pooler.out_features,
                "bias": True,
                "activation_function": st_path(settings.projection_activation),
            },
        )
        state = {f"linear.{k}": v.detach().contiguous() for k, v in pooler.state_dict().items()}
        save_file(state, str(dense_dir / "model.safetensors"))
        modules.append(_module(2, "2_Dense", "Dense"))
    if settings.normalize:
        idx = len(modules)
        (folder / f"{idx}_Normalize").mkdir(exist_ok=True)
        modules.append(_module(idx, f"{idx}_Normalize", "Normalize"))
    _write_json(folder / MODULES_FILE, modules)
    prompts = {"query": settings.query_prefix, "document": settings.passage_prefix}
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "prompts": {k: v for k, v in prompts.items() if v},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine" if settings.normalize else "dot",
        },
    )
