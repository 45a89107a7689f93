"""Build the encoder a training run starts from: settings over the folder's, fine-tuning applied.

Takes plain keyword arguments; ``ModelArguments.encoder_kwargs`` maps the command line to them.
"""

from __future__ import annotations

from typing import Any

from densekit.errors import ConfigError
from densekit.modeling import cpu_dropout
from densekit.modeling.encoder import DenseEncoder
from densekit.modeling.finetune import apply_bitfit, wrap_lora
from densekit.modeling.losses import loss_from_args


def _model_kwargs(attn_implementation: str | None, load_in_4bit: bool, fine_tune_type: str) -> dict:
    kwargs: dict[str, Any] = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if load_in_4bit:  # QLoRA: 4-bit frozen base, LoRA adapters in bf16 (GPU only)
        if fine_tune_type != "lora":
            raise ConfigError(
                "--load_in_4bit needs --lora: 4-bit weights cannot be trained directly"
            )
        import torch
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    return kwargs


def build_encoder(
    model_name_or_path: str,
    *,
    encoder_class: type[DenseEncoder] = DenseEncoder,
    cache_dir: str | None = None,
    attn_implementation: str | None = None,
    load_in_4bit: bool = False,
    fine_tune_type: str = "full",
    lora: dict[str, Any] | None = None,
    **settings: Any,
) -> DenseEncoder:
    """The encoder to train, its CPU dropout drawn fast (:mod:`densekit.modeling.cpu_dropout`).
    ``settings`` are ``EncoderConfig`` fields (``None`` = the folder's); ``lora`` holds ``r``,
    ``alpha``, ``dropout``, ``target_modules`` and ``adapter_path``."""
    encoder = encoder_class.from_pretrained(
        model_name_or_path,
        cache_dir=cache_dir,
        model_kwargs=_model_kwargs(attn_implementation, load_in_4bit, fine_tune_type),
        fine_tune_type=fine_tune_type,
        **settings,
    )
    if fine_tune_type == "bitfit":
        apply_bitfit(encoder)
    elif fine_tune_type == "lora":
        _apply_lora(encoder, lora or {}, load_in_4bit)
    return cpu_dropout.install(encoder)


def _apply_lora(encoder: DenseEncoder, lora: dict[str, Any], load_in_4bit: bool) -> None:
    """Wrap the backbone(s) in peft LoRA. A tied encoder's one backbone is wrapped once and
    stays shared, so ``query_model`` is the PeftModel (saved as an adapter folder, reloadable)."""
    tied = encoder.tied
    towers = ("query_model",) if tied else ("query_model", "passage_model")
    for name in towers:
        backbone = getattr(encoder, name)
        if load_in_4bit:
            from peft import prepare_model_for_kbit_training

            backbone = prepare_model_for_kbit_training(backbone)
        wrapped = wrap_lora(
            backbone,
            lora.get("r", 8),
            lora.get("alpha", 32),
            lora.get("dropout", 0.1),
            lora.get("target_modules"),
            lora.get("adapter_path"),
        )
        setattr(encoder, name, wrapped)
    if tied:
        encoder.passage_model = encoder.query_model


class BiEncoderRetriever(DenseEncoder):
    """Trove's name for the encoder, with Trove's constructor from the argument objects.

    It lives here, beside ``build_encoder``, so the encoder module never depends on the
    factory; the argument objects map themselves to keyword arguments (``encoder_kwargs``).
    As in Trove, the model carries the loss its arguments name (``default_loss``), which a
    ``RetrievalTrainer`` given no ``loss_fn`` uses, and ``encoder_class`` picks a subclass by its
    class name or ``_alias`` (Trove's ``DefaultEncoder`` subclasses, e.g. one that formats
    queries with task instructions).
    """

    _alias: str | None = None

    @classmethod
    def from_model_args(
        cls, model_args=None, data_args=None, args=None, training_args=None
    ) -> BiEncoderRetriever:
        """``training_args`` is accepted for Trove's signature (precision and devices are the
        trainer's business here)."""
        model_args = model_args if model_args is not None else args
        encoder_class = cls.named(getattr(model_args, "encoder_class", None))
        encoder = build_encoder(**model_args.encoder_kwargs(data_args), encoder_class=encoder_class)
        # Not a submodule: the loss has no weights to save and must not enter state dicts.
        object.__setattr__(encoder, "default_loss", loss_from_args(model_args, encoder.settings))
        return encoder

    @classmethod
    def named(cls, name: str | None) -> type[BiEncoderRetriever]:
        """Trove's ``--encoder_class``: this class for ``default`` (or none), else the subclass
        whose class name or ``_alias`` is ``name``."""
        if name is None or name.lower() in ("default", "none"):
            return cls
        found, todo = [], [cls]
        while todo:  # breadth first, in definition order: the latest definition wins
            klass = todo.pop(0)
            if name in (klass.__name__, klass.__dict__.get("_alias")):
                found.append(klass)
            todo.extend(klass.__subclasses__())
        if not found:
            raise ConfigError(
                f"--encoder_class {name}: no such encoder; define a subclass of DefaultEncoder "
                f"with _alias = {name!r} before building the model"
            )
        return found[-1]
