"""The bi-encoder: backbone(s) + pooling + optional projection + optional normalization.

It only turns token tensors into vectors; losses, gathering across processes and file
reading live elsewhere. ``save_pretrained`` writes a normal HF folder, ``densekit_config.json``
and sentence-transformers module files, so ``SentenceTransformer(path)`` loads a tied model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, PreTrainedTokenizerBase

from densekit.errors import ConfigError
from densekit.modeling import st_format
from densekit.modeling.activations import activation
from densekit.modeling.config import EncoderConfig, resolve_config
from densekit.modeling.folders import (
    ADAPTER_CONFIG,
    CONFIG_NAME,
    POOLER_FILE,
    adapter_base,
    read_folder,
)
from densekit.modeling.pooling import pool
from densekit.modeling.tokenizer import load_tokenizer
from densekit.resources import looks_local

logger = logging.getLogger(__name__)


@dataclass
class EncoderOutput:
    """Query and passage vectors of one batch (either may be absent)."""

    q_reps: torch.Tensor | None = None
    p_reps: torch.Tensor | None = None


def load_backbone(path: str, cache_dir: str | None = None, **kwargs) -> nn.Module:
    """``AutoModel`` from a folder or hub name, or a peft adapter folder on top of its base."""
    base_path = adapter_base(path)
    if base_path is not None:
        from peft import PeftModel

        base = AutoModel.from_pretrained(base_path, cache_dir=cache_dir, **kwargs)
        return PeftModel.from_pretrained(base, str(path))
    if not Path(path).exists() and looks_local(path):
        raise ConfigError(f"model folder {path} does not exist")
    try:
        return AutoModel.from_pretrained(path, cache_dir=cache_dir, **kwargs)
    except (OSError, ValueError, SafetensorError) as exc:  # e.g. truncated weights
        raise ConfigError(f"cannot load model {path!r}: {str(exc).splitlines()[0]}") from None


class DenseEncoder(nn.Module):
    """Query and passage towers (one shared module unless untied) that output vectors."""

    def __init__(
        self,
        query_model: nn.Module,
        passage_model: nn.Module | None,
        settings: EncoderConfig,
        pooler: nn.Linear | None = None,
    ) -> None:
        super().__init__()
        self.query_model = query_model
        self.passage_model = passage_model if passage_model is not None else query_model
        self.settings = settings
        self.pooler = pooler

    # ------------------------------------------------------------------ building and loading

    @classmethod
    def from_pretrained(
        cls, path: str, cache_dir: str | None = None, model_kwargs: dict | None = None, **given
    ) -> DenseEncoder:
        """Load any folder ``modeling.folders`` reads (or a hub name); ``given`` overrides settings.

        A plain HF model with ``untie_encoder`` starts both towers from the same weights;
        ``add_pooler`` (via ``projection_out_dim``) creates a fresh projection unless the folder
        holds one (densekit's pooler, a Tevatron v1 ``pooler.pt``, an ST ``Dense``);
        ``lora_name_or_path`` puts a peft adapter (e.g. Tevatron v2's) over the backbone.
        """
        add_pooler = bool(given.pop("add_pooler", False))
        lora_path = given.pop("lora_name_or_path", None)
        folder = read_folder(path)
        config = resolve_config(folder, **given)
        model_kwargs = dict(model_kwargs or {})
        query_model = load_backbone(folder.towers[0], cache_dir, **model_kwargs)
        passage_model = None
        if config.untie_encoder:  # saved untied towers, or one tower to start both from
            passage_model = load_backbone(folder.towers[-1], cache_dir, **model_kwargs)
        if lora_path:
            query_model, passage_model = _with_adapter(query_model, passage_model, lora_path)
        _clamp_lengths(config, query_model)
        if add_pooler and config.projection_out_dim is None:
            config.projection_out_dim = query_model.config.hidden_size
        pooler = None
        if config.has_pooler:
            in_dim = config.projection_in_dim or query_model.config.hidden_size
            config.projection_in_dim = in_dim
            pooler = nn.Linear(in_dim, config.projection_out_dim)
            if folder.projection is not None:
                try:
                    pooler.load_state_dict(folder.projection())
                except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
                    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise ConfigError(
                        f"cannot load the projection of model {path!r}: {first}"
                    ) from None
        if config.base_model_name_or_path is None:
            config.base_model_name_or_path = str(path)
        return cls(query_model, passage_model, config, pooler)

    def load_weights(self, path: str | Path) -> None:
        """Load the weights of a folder this encoder saved (used to resume from a checkpoint)."""
        folder = Path(path)
        if self.tied:
            _load_backbone_weights(self.query_model, folder)
        else:
            _load_backbone_weights(self.query_model, folder / "query_model")
            _load_backbone_weights(self.passage_model, folder / "passage_model")
        if self.pooler is not None:
            self.pooler.load_state_dict(load_file(str(folder / POOLER_FILE)))

    # ------------------------------------------------------------------ text

    def format_query(self, text: str, **kwargs: object) -> str:
        """The query text this encoder expects (prefix or per-record prompt), Trove's API."""
        return self.settings.format_query(text, **kwargs)

    def format_passage(self, text: str, title: str | None = None, **kwargs: object) -> str:
        """The passage text this encoder expects (prefix, title, separator), Trove's API."""
        return self.settings.format_passage(text, title, **kwargs)

    @property
    def append_eos_token(self) -> bool:
        return self.settings.append_eos_token

    @property
    def tied(self) -> bool:
        return self.passage_model is self.query_model

    # ------------------------------------------------------------------ forward

    def encode(self, batch: dict[str, torch.Tensor], is_query: bool) -> torch.Tensor:
        """Vectors for one tokenized batch of queries or passages."""
        model = self.query_model if is_query else self.passage_model
        inputs = {
            k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        mask = batch["attention_mask"]
        if bool((mask[:, 0] == 0).any()):
            # Left padding: count positions from each row's first real token, so a text gets
            # the same vector whichever side its batch was padded on.
            inputs["position_ids"] = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
        hidden = model(**inputs, return_dict=True).last_hidden_state
        return represent(hidden, mask, self.settings, self.pooler)

    def encode_query(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encode(batch, is_query=True)

    def encode_passage(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encode(batch, is_query=False)

    def forward(
        self,
        query: dict[str, torch.Tensor] | None = None,
        passage: dict[str, torch.Tensor] | None = None,
    ) -> EncoderOutput:
        return EncoderOutput(
            q_reps=None if query is None else self.encode_query(query),
            p_reps=None if passage is None else self.encode_passage(passage),
        )

    def activation_checkpointing_enable(
        self,
        activation_checkpointing_kwargs: dict | None = None,
        every_n_layers: int = 1,
        offload: bool = False,
    ) -> None:
        """Called by the HF Trainer for ``--gradient_checkpointing``; non-reentrant suits DDP."""
        kwargs = activation_checkpointing_kwargs or {"use_reentrant": False}
        for model in {id(m): m for m in (self.query_model, self.passage_model)}.values():
            model.activation_checkpointing_enable(
                activation_checkpointing_kwargs=kwargs,
                every_n_layers=every_n_layers,
                offload=offload,
            )
            if self.settings.fine_tune_type != "full" and hasattr(
                model, "enable_input_require_grads"
            ):
                model.enable_input_require_grads()

    # ------------------------------------------------------------------ saving

    def save_pretrained(
        self,
        path: str | Path,
        tokenizer: PreTrainedTokenizerBase | None = None,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Write the model folder: backbone(s), pooler, densekit config, sentence-transformers files.

        ``state_dict`` (this module's keys) is given when the weights live elsewhere, e.g.
        gathered from DeepSpeed ZeRO-3 shards by the Trainer.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        parts = _split_state_dict(state_dict) if state_dict is not None else {}
        if self.tied:
            self.query_model.save_pretrained(folder, state_dict=parts.get("query_model"))
        else:
            self.query_model.save_pretrained(
                folder / "query_model", state_dict=parts.get("query_model")
            )
            self.passage_model.save_pretrained(
                folder / "passage_model", state_dict=parts.get("passage_model")
            )
        if self.pooler is not None:
            state = parts.get("pooler") or self.pooler.state_dict()
            save_file(
                {k: v.detach().contiguous() for k, v in state.items()}, str(folder / POOLER_FILE)
            )
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        self.settings.save(folder)
        st_format.write_files(
            folder, self.settings, self.query_model.config.hidden_size, self.pooler, self.tied
        )


def represent(
    hidden: torch.Tensor, mask: torch.Tensor, settings: EncoderConfig, pooler: nn.Module | None
) -> torch.Tensor:
    """Token states -> vectors: pooling, then :func:`project`."""
    return project(pool(hidden, mask, settings.pooling), settings, pooler)


def project(reps: torch.Tensor, settings: EncoderConfig, pooler: nn.Module | None) -> torch.Tensor:
    """Pooled states -> vectors: projection (and its activation), normalization.

    One function, so the torch encoder and the ONNX/OpenVINO runners (whose graphs end at the
    pooling) finish the vectors identically.
    """
    if pooler is not None:
        reps = pooler(reps)
        if settings.projection_activation is not None:
            reps = activation(settings.projection_activation)(reps)
    if settings.normalize:
        reps = F.normalize(reps, p=2, dim=-1)
    return reps


def _with_adapter(
    query_model: nn.Module, passage_model: nn.Module | None, adapter: str
) -> tuple[nn.Module, nn.Module | None]:
    """The backbone(s) with a saved peft adapter on top (Tevatron's ``--lora_name_or_path``)."""
    from peft import PeftModel

    if not (Path(adapter) / ADAPTER_CONFIG).is_file():
        raise ConfigError(f"--lora_name_or_path {adapter}: no {ADAPTER_CONFIG} there")
    wrapped = PeftModel.from_pretrained(query_model, adapter)
    if passage_model is not None:
        passage_model = PeftModel.from_pretrained(passage_model, adapter)
    return wrapped, passage_model


def _clamp_lengths(settings: EncoderConfig, model: nn.Module) -> None:
    """Cap max lengths at what the model's position table holds (else it crashes mid-batch)."""
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    if not limit or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # their positions start after the padding index
    for name in ("query_max_len", "passage_max_len"):
        if getattr(settings, name) > limit:
            logger.warning(
                "%s %d exceeds the model's %d positions: using %d",
                name,
                getattr(settings, name),
                limit,
                limit,
            )
            setattr(settings, name, limit)


def _split_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{"query_model.x": t, "pooler.y": u}`` -> ``{"query_model": {"x": t}, "pooler": {"y": u}}``."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        head, _, rest = key.partition(".")
        parts.setdefault(head, {})[rest] = value
    return parts


def _load_backbone_weights(model: nn.Module, folder: Path) -> None:
    if (folder / ADAPTER_CONFIG).is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
    elif (folder / "model.safetensors.index.json").is_file():
        from transformers.modeling_utils import load_sharded_checkpoint

        load_sharded_checkpoint(model, str(folder))
    else:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))


__all__ = [
    "ADAPTER_CONFIG",
    "CONFIG_NAME",
    "POOLER_FILE",
    "DenseEncoder",
    "EncoderOutput",
    "load_backbone",
    "load_tokenizer",
    "project",
    "represent",
]
