"""Fine-tune types through build_encoder: full, bitfit (bias only), LoRA (adapters only)."""

from __future__ import annotations

import pytest
import torch

from densekit.arguments import DataArguments, ModelArguments
from densekit.data.collator import tokenize
from densekit.errors import ConfigError
from densekit.modeling.encoder import DenseEncoder
from densekit.modeling.factory import BiEncoderRetriever
from densekit.modeling.finetune import default_lora_targets


def _trainable(encoder) -> set[str]:
    return {name for name, p in encoder.named_parameters() if p.requires_grad}


def test_full_trains_everything(tiny_model):
    encoder = BiEncoderRetriever.from_model_args(
        ModelArguments(model_name_or_path=tiny_model), DataArguments()
    )
    names = [name for name, _ in encoder.named_parameters()]
    assert _trainable(encoder) == set(names)


def test_bitfit_only_bias(tiny_model):
    encoder = BiEncoderRetriever.from_model_args(
        ModelArguments(model_name_or_path=tiny_model, fine_tune_type="bitfit", add_pooler=True),
        DataArguments(),
    )
    trainable = _trainable(encoder)
    assert trainable
    assert all(name.endswith(".bias") for name in trainable)
    biases = {n for n, _ in encoder.named_parameters() if n.endswith(".bias")}
    assert trainable == biases
    assert "pooler.bias" in trainable and "pooler.weight" not in trainable


@pytest.mark.parametrize("flags", [{"lora": True}, {"fine_tune_type": "lora"}])
def test_lora_only_adapters(tiny_model, tokenizer, flags):
    model_args = ModelArguments(model_name_or_path=tiny_model, lora_r=4, **flags)
    assert model_args.fine_tune_type == "lora"
    encoder = BiEncoderRetriever.from_model_args(model_args, DataArguments())
    assert encoder.tied
    trainable = _trainable(encoder)
    assert trainable and all("lora_" in name for name in trainable)
    # adapters on the default BERT targets, and a zero-initialized B keeps the base vectors
    assert any(".query.lora_A" in n for n in trainable)
    assert any(".value.lora_B" in n for n in trainable)
    base = DenseEncoder.from_pretrained(tiny_model).eval()
    batch = dict(tokenize(tokenizer, ["some text", "more text here"], 16))
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval().encode(batch, True), base.encode(batch, True))


def test_lora_untied_wraps_both_towers(tiny_model):
    encoder = BiEncoderRetriever.from_model_args(
        ModelArguments(model_name_or_path=tiny_model, lora=True, untie_encoder=True),
        DataArguments(),
    )
    assert not encoder.tied
    trainable = _trainable(encoder)
    assert any(n.startswith("query_model.") for n in trainable)
    assert any(n.startswith("passage_model.") for n in trainable)
    assert all("lora_" in n for n in trainable)


def test_lora_bad_targets(tiny_model):
    with pytest.raises(ConfigError, match="LoRA"):
        BiEncoderRetriever.from_model_args(
            ModelArguments(model_name_or_path=tiny_model, lora=True, lora_target_modules="nope"),
            DataArguments(),
        )


def test_default_lora_targets():
    assert default_lora_targets("bert") == ["query", "key", "value"]
    assert "q_proj" in default_lora_targets("mistral")
    assert default_lora_targets("something-else") is None


def test_lora_tied_saves_an_adapter_and_reloads(tiny_model, tokenizer, tmp_path):
    encoder = BiEncoderRetriever.from_model_args(
        ModelArguments(model_name_or_path=tiny_model, lora=True, lora_r=4), DataArguments()
    )
    with torch.no_grad():  # as if trained: non-zero B matrices change the vectors
        for name, param in encoder.named_parameters():
            if "lora_B" in name:
                param.normal_()
    batch = dict(tokenize(tokenizer, ["some text", "more text here"], 16))
    with torch.no_grad():
        before = encoder.eval().encode(batch, True)
        base = DenseEncoder.from_pretrained(tiny_model).eval().encode(batch, True)
    assert not torch.allclose(before, base)
    encoder.save_pretrained(tmp_path / "lora", tokenizer)
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    assert not (tmp_path / "lora" / "modules.json").exists()
    reloaded = DenseEncoder.from_pretrained(str(tmp_path / "lora")).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode(batch, True), before)
