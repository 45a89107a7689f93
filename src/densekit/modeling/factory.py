"""Build the encoder a training run starts from: flags over the folder's settings, tuning applied."""

from __future__ import annotations

from densekit.arguments import DataArguments, ModelArguments
from densekit.errors import ConfigError
from densekit.modeling.encoder import DenseEncoder
from densekit.modeling.finetune import apply_bitfit, wrap_lora


def build_encoder(
    model_args: ModelArguments, data_args: DataArguments | None = None
) -> DenseEncoder:
    """The encoder to train: flags over the model folder's settings, fine-tune type applied."""
    data_args = data_args or DataArguments()
    model_kwargs = {}
    if model_args.attn_implementation:
        model_kwargs["attn_implementation"] = model_args.attn_implementation
    if model_args.load_in_4bit:  # QLoRA: 4-bit frozen base, LoRA adapters in bf16 (GPU only)
        if model_args.fine_tune_type != "lora":
            raise ConfigError(
                "--load_in_4bit needs --lora: 4-bit weights cannot be trained directly"
            )
        import torch
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    encoder = DenseEncoder.from_pretrained(
        model_args.model_name_or_path,
        cache_dir=model_args.cache_dir,
        model_kwargs=model_kwargs,
        pooling=model_args.pooling,
        normalize=model_args.normalize,
        temperature=model_args.temperature,
        query_prefix=data_args.query_prefix,
        passage_prefix=data_args.passage_prefix,
        query_max_len=data_args.query_max_len,
        passage_max_len=data_args.passage_max_len,
        append_eos_token=data_args.append_eos_token or None,
        padding_side=data_args.padding_side,
        untie_encoder=model_args.untie_encoder or None,
        add_pooler=model_args.add_pooler,
        projection_in_dim=model_args.projection_in_dim,
        projection_out_dim=model_args.projection_out_dim,
        fine_tune_type=model_args.fine_tune_type,
    )
    if model_args.fine_tune_type == "bitfit":
        apply_bitfit(encoder)
    elif model_args.fine_tune_type == "lora":
        # A tied encoder's one backbone is wrapped once and stays shared by both towers, so
        # query_model is the PeftModel (saved as an adapter folder, reloadable).
        tied = encoder.tied
        towers = ("query_model",) if tied else ("query_model", "passage_model")
        for name in towers:
            backbone = getattr(encoder, name)
            if model_args.load_in_4bit:
                from peft import prepare_model_for_kbit_training

                backbone = prepare_model_for_kbit_training(backbone)
            wrapped = wrap_lora(
                backbone,
                model_args.lora_r,
                model_args.lora_alpha,
                model_args.lora_dropout,
                model_args.lora_target_modules,
                model_args.lora_name_or_path,
            )
            setattr(encoder, name, wrapped)
        if tied:
            encoder.passage_model = encoder.query_model
    return encoder
