"""What the ONNX Runtime and OpenVINO backends share: where an export lives, how a stale one is
recognised, which models can be exported, and the encoder object ``encode_texts`` drives.

An encoder tower is exported up to its pooling (token ids + mask -> one pooled state per row,
:class:`PooledStates`, the torch encoder's own :func:`pool` traced into the graph): the runtime
then hands back a row per text instead of a state per token, which a 256-token batch spends
time copying. The projection and normalization stay in torch (:func:`project`), the code the
torch encoder runs. A cross-encoder
reranker exports its sequence-classification model (:class:`SequenceScores`: token ids, mask
and token types -> one logit per pair); the exporters take either graph.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from densekit.errors import ConfigError
from densekit.inference.encode import token_ids
from densekit.modeling.config import EncoderConfig
from densekit.modeling.encoder import ADAPTER_CONFIG, project
from densekit.modeling.first_token import first_token_states
from densekit.modeling.pooling import pool

FORMATS = ("onnx", "openvino")
QUANTIZATIONS = ("int8",)
EXPORT_ROOT = "densekit_export"  # beside the model's own files; never ST's onnx/ or openvino/
# Bumped when what an export contains changes, so exports of older densekit versions are redone.
EXPORT_VERSION = 2  # 2: towers end at the pooling; OpenVINO int8 activations symmetric
INPUTS = ("input_ids", "attention_mask")
PAIR_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_HASHED_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth")
_SKIPPED_DIRS = {EXPORT_ROOT, "onnx", "openvino", "runs"}

# token feeds (numpy int64 arrays by input name) -> pooled states [batch, dim] (or logits)
Tower = Callable[[dict[str, np.ndarray]], np.ndarray]


def require(module: str, fmt: str) -> ModuleType:
    """Import an optional runtime package, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"the {fmt} backend needs the {module.split('.')[0]} package: "
            f"pip install 'densekit[{fmt}]'"
        ) from None


@dataclass(frozen=True)
class ExportSpec:
    """One export of a model: its runtime format and its weight precision."""

    format: str
    quantize: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"--format {self.format!r}: expected one of {', '.join(FORMATS)}")
        if self.quantize is not None and self.quantize not in QUANTIZATIONS:
            raise ConfigError(f"--quantize {self.quantize!r}: expected int8")

    @property
    def name(self) -> str:
        return f"{self.format}-{self.quantize or 'fp32'}"


def export_folder(model_path: str | Path, spec: ExportSpec, export_dir: str | None) -> Path:
    """Where ``spec``'s export of ``model_path`` lives: ``<model>/densekit_export/<format>-<dtype>``
    unless ``export_dir`` (for a model folder that cannot be written) says otherwise."""
    if export_dir is None and not Path(model_path).is_dir():
        raise ConfigError(
            f"cannot export {model_path!r}: exports are cached beside a local model folder "
            "(download the model to a folder first, or pass --export_dir)"
        )
    root = Path(export_dir) if export_dir is not None else Path(model_path) / EXPORT_ROOT
    return root / spec.name


def _hashed_files(folder: Path) -> list[Path]:
    """Weights and configs of the folder and of its tower / module subfolders (one level)."""
    files = [p for p in folder.iterdir() if p.is_file()]
    for sub in folder.iterdir():
        name = sub.name
        if sub.is_dir() and name not in _SKIPPED_DIRS and not name.startswith((".", "checkpoint-")):
            files += [p for p in sub.iterdir() if p.is_file()]
    return sorted(
        (p for p in files if p.suffix in _HASHED_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


def fingerprint(
    model_path: str | Path, spec: ExportSpec, kind: str | None = None, scheme: str | None = None
) -> str:
    """A digest of the model's weights and configs (content, not dates) and of the export recipe:
    an export whose fingerprint differs was made from another model, by another densekit, or
    for another CPU class. ``kind`` names a graph other than the encoder towers (e.g.
    ``"reranker"``); ``scheme`` is what the backend decides by the CPU (ONNX int8 weight bits)."""
    folder = Path(model_path)
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"densekit-export-{EXPORT_VERSION}:{spec.name}".encode())
    if kind:
        digest.update(f":{kind}".encode())
    if scheme:
        digest.update(f":{scheme}".encode())
    for path in _hashed_files(folder):
        digest.update(b"\0" + path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def backbones(encoder: Any) -> dict[str, nn.Module]:
    """The towers to export by file name: one shared ``model``, or untied query/passage towers."""
    if encoder.query_model is encoder.passage_model:
        return {"model": encoder.query_model}
    return {"query_model": encoder.query_model, "passage_model": encoder.passage_model}


def _refuse_decoder_only(model_type: str, model_path: str | Path, verb: str = "encodes") -> None:
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and (
        model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    ):
        raise ConfigError(
            f"{model_path} is a decoder-only model ({model_type}): it {verb} with "
            "--backend torch only"
        )


_LORA_REFUSAL = (
    "a LoRA adapter cannot be exported as it is: merge it first "
    "(densekit merge-lora) and export the merged folder"
)


def check_exportable_folder(model_path: str | Path, verb: str = "encodes") -> None:
    """Refuse what the folder alone shows cannot be exported, before any weights are loaded."""
    folder = Path(model_path)
    if (folder / ADAPTER_CONFIG).is_file():
        raise ConfigError(_LORA_REFUSAL)
    for config in (folder / "config.json", folder / "query_model" / "config.json"):
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type", "")
        except (OSError, ValueError, AttributeError):
            continue
        _refuse_decoder_only(str(model_type), model_path, verb)
        return


def check_exportable_reranker(model: nn.Module, model_path: str | Path) -> None:
    """Refuse a cross-encoder the exporters would export wrongly (decoder-only, LoRA)."""
    check_exportable_folder(model_path, verb="reranks")
    if hasattr(model, "peft_config"):
        raise ConfigError(_LORA_REFUSAL)
    _refuse_decoder_only(getattr(model.config, "model_type", ""), model_path, "reranks")


def check_exportable(encoder: Any, model_path: str | Path) -> None:
    """Refuse, with the reason, a loaded model the exporters would export wrongly."""
    check_exportable_folder(model_path)
    for model in backbones(encoder).values():
        if hasattr(model, "peft_config"):
            raise ConfigError(_LORA_REFUSAL)
        _refuse_decoder_only(getattr(model.config, "model_type", ""), model_path)
    if encoder.settings.padding_side != "right":
        raise ConfigError("the onnx/openvino backends pad on the right; use --backend torch")


class PooledStates(nn.Module):
    """An encoder tower's exported graph: token ids + mask -> the pooled state of each row
    (``pooling`` as the encoder pools; no projection, no normalization). With ``cls`` pooling a
    BERT-family tower's last layer is computed for the first token only
    (:class:`~densekit.modeling.first_token.FirstTokenStates`: the same state, less work).

    Every exported graph names its inputs, its output and the output's dynamic axes, and keeps
    the HF model as ``backbone`` (the exporters read its config and attention implementation).
    """

    output_name = "pooled_states"
    output_axes = ("batch",)

    def __init__(self, backbone: nn.Module, pooling: str) -> None:
        super().__init__()
        self.backbone, self.pooling = backbone, pooling
        self.input_names = INPUTS
        # cls pooling reads position 0 alone: a BERT-family tower's last layer runs for it only
        self.first_token = first_token_states(backbone) if pooling == "cls" else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.first_token is not None:
            return self.first_token(input_ids, attention_mask)[:, 0]
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return pool(out.last_hidden_state, attention_mask, self.pooling)


class SequenceScores(nn.Module):
    """A cross-encoder's exported graph: token ids, mask (and token types when the tokenizer
    makes them) -> the one-label classifier's logit per pair, shape ``[batch]``, computed by
    ``scores`` (the reranker's :meth:`~densekit.modeling.reranker.CrossEncoderReranker.scorer`);
    ``backbone`` is the HF classifier itself (its config names the model in errors)."""

    output_name = "logits"
    output_axes = ("batch",)

    def __init__(
        self, backbone: nn.Module, scores: nn.Module, input_names: Sequence[str] = INPUTS
    ) -> None:
        super().__init__()
        self.backbone, self.scores = backbone, scores
        self.input_names = tuple(input_names)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return self.scores(**inputs)


def token_feeds(
    tokenizer, texts: Sequence[str], settings: EncoderConfig, is_query: bool
) -> dict[str, np.ndarray]:
    """One right-padded batch of ``texts`` truncated (and EOS-terminated) as encode does it."""
    max_len = settings.query_max_len if is_query else settings.passage_max_len
    ids = token_ids(tokenizer, texts, max_len, settings.append_eos_token)
    batch = tokenizer.pad({"input_ids": ids}, return_attention_mask=True, return_tensors="np")
    return {name: np.asarray(batch[name], dtype=np.int64) for name in INPUTS}


def calibration_feeds(
    tokenizer, texts: Sequence[str], settings: EncoderConfig
) -> list[dict[str, np.ndarray]]:
    """Calibration inputs for static int8 quantisation: each passage alone (no padding)."""
    return [token_feeds(tokenizer, [text], settings, is_query=False) for text in texts]


def sample_rows(count: int, size: int, seed: int = 0) -> list[int]:
    """``size`` row numbers out of ``count``, random but fixed, in order (a calibration sample)."""
    if count <= size:
        return list(range(count))
    return sorted(np.random.default_rng(seed).choice(count, size=size, replace=False).tolist())


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The manifest of an export folder, or ``None`` when there is no readable one."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


class ExportedEncoder:
    """An encoder for ``encode_texts`` / ``encode_table`` whose transformer runs in a runtime.

    It offers what those need from the torch ``DenseEncoder`` (``settings``, ``encode``, text
    formatting, a device) and turns the runtime's pooled states into vectors with
    :func:`project`, the torch encoder's own projection / normalization.
    """

    device = torch.device("cpu")

    def __init__(
        self,
        settings: EncoderConfig,
        pooler: nn.Module | None,
        towers: dict[str, Tower],
        backend: str,
    ) -> None:
        self.settings, self.pooler, self.backend = settings, pooler, backend
        query = towers.get("query_model", towers.get("model"))
        passage = towers.get("passage_model", towers.get("model"))
        if query is None or passage is None:
            raise ConfigError(f"the {backend} export lacks a tower: export the model again")
        self._query, self._passage = query, passage

    def format_query(self, text: str, **kwargs: object) -> str:
        return self.settings.format_query(text, **kwargs)

    def format_passage(self, text: str, title: str | None = None, **kwargs: object) -> str:
        return self.settings.format_passage(text, title, **kwargs)

    def encode(self, batch: dict[str, torch.Tensor], is_query: bool) -> torch.Tensor:
        """Vectors for one tokenized (right-padded) batch, as ``DenseEncoder.encode`` gives."""
        feeds = {name: batch[name].cpu().numpy().astype(np.int64, copy=False) for name in INPUTS}
        pooled = (self._query if is_query else self._passage)(feeds)
        return project(torch.from_numpy(np.asarray(pooled)), self.settings, self.pooler)
