"""Which parameters train: all (full), bias terms only (bitfit), or LoRA adapters (peft)."""

from __future__ import annotations

from torch import nn

from densekit.errors import ConfigError

# Default LoRA targets per model family (peft's own table is used for anything else).
_LORA_TARGETS = {
    "bert": ["query", "key", "value"],
    "roberta": ["query", "key", "value"],
    "xlm-roberta": ["query", "key", "value"],
    "electra": ["query", "key", "value"],
    "distilbert": ["q_lin", "k_lin", "v_lin"],
    "mpnet": ["q", "k", "v"],
}
_DECODER_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_DECODER_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "mixtral")


def default_lora_targets(model_type: str) -> list[str] | None:
    """Sensible LoRA target modules for a model family, or None to let peft decide."""
    if model_type in _LORA_TARGETS:
        return _LORA_TARGETS[model_type]
    if model_type in _DECODER_FAMILIES:
        return _DECODER_TARGETS
    return None


def apply_bitfit(model: nn.Module) -> None:
    """Freeze everything but bias terms (Ben Zaken et al., 2022)."""
    for name, param in model.named_parameters():
        param.requires_grad = name.endswith("bias")


def wrap_lora(
    backbone: nn.Module,
    r: int,
    alpha: int,
    dropout: float,
    target_modules: str | None,
    adapter_path: str | None = None,
) -> nn.Module:
    """A peft LoRA model over ``backbone``: new adapters, or trainable ones loaded from a folder."""
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model

    if adapter_path:
        return PeftModel.from_pretrained(backbone, adapter_path, is_trainable=True)
    targets = (
        [t.strip() for t in target_modules.split(",") if t.strip()]
        if target_modules
        else default_lora_targets(backbone.config.model_type)
    )
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        task_type=TaskType.FEATURE_EXTRACTION,
    )
    try:
        return get_peft_model(backbone, config)
    except ValueError as exc:
        raise ConfigError(f"LoRA: {str(exc).splitlines()[0]} (set --lora_target_modules)") from None
