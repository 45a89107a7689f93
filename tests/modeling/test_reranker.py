"""Cross-encoder folders: densekit <-> sentence-transformers CrossEncoder, batching, decoders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from densekit.errors import ConfigError
from densekit.modeling.reranker import CrossEncoderReranker, RerankerConfig

PAIRS = [
    ("what is a kinase", "A kinase is an enzyme that adds phosphate groups."),
    ("vaccine", "Vaccines train the immune system; a much longer passage " * 3),
    ("short", "x"),
    ("insulin and the pancreas", "The pancreas secretes insulin into the blood."),
]


def make_reranker(backbone: str, folder, activation: str = "identity") -> CrossEncoderReranker:
    torch.manual_seed(0)
    reranker = CrossEncoderReranker.from_backbone(
        backbone, RerankerConfig(max_len=64, activation=activation)
    )
    reranker.save_pretrained(folder)
    return reranker


def alone(reranker: CrossEncoderReranker, query: str, passage: str) -> float:
    """One pair, no padding: the reference the batched scores must equal."""
    with torch.no_grad():
        batch = reranker.tokenizer(
            query, passage, truncation=True, max_length=64, return_tensors="pt"
        )
        return float(reranker.model.eval()(**batch).logits.view(-1)[0])


@pytest.mark.parametrize("activation", ["identity", "sigmoid"])
def test_densekit_folder_loads_in_sentence_transformers(tiny_model, tmp_path, activation):
    from sentence_transformers import CrossEncoder

    make_reranker(tiny_model, tmp_path / "rr", activation)
    ours = CrossEncoderReranker.from_pretrained(tmp_path / "rr")
    theirs = CrossEncoder(str(tmp_path / "rr"), device="cpu")
    assert theirs.max_length == 64
    expected = theirs.predict(PAIRS, batch_size=2)
    got = ours.score([q for q, _ in PAIRS], [p for _, p in PAIRS], batch_size=3)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    config = json.loads((tmp_path / "rr" / "config.json").read_text())
    assert len(config["id2label"]) == 1 and "activation_fn" in config["sentence_transformers"]


def test_sentence_transformers_folder_reranks_with_its_own_scores(tokenizer, tmp_path):
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=128, num_labels=1,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "hf")
    CrossEncoder(str(tmp_path / "hf"), max_length=48, device="cpu").save(str(tmp_path / "st"))
    theirs = CrossEncoder(str(tmp_path / "st"), device="cpu")
    ours = CrossEncoderReranker.from_pretrained(tmp_path / "st")
    assert ours.settings.activation == "sigmoid"  # ST's default for one label
    assert ours.settings.max_len == 48
    expected = theirs.predict(PAIRS)
    got = ours.score([q for q, _ in PAIRS], [p for _, p in PAIRS])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_save_load_round_trip_and_batching_equals_alone(tiny_model, tmp_path):
    made = make_reranker(tiny_model, tmp_path / "rr")
    loaded = CrossEncoderReranker.from_pretrained(tmp_path / "rr")
    assert loaded.settings == made.settings
    batched = loaded.score([q for q, _ in PAIRS], [p for _, p in PAIRS], batch_size=4)
    single = [alone(made, q, p) for q, p in PAIRS]
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)


def test_decoder_backbone_scores_last_token_despite_padding(tiny_decoder, tmp_path):
    reranker = make_reranker(tiny_decoder("llama"), tmp_path / "llama")
    assert reranker.model.config.pad_token_id == reranker.tokenizer.pad_token_id
    loaded = CrossEncoderReranker.from_pretrained(tmp_path / "llama")
    batched = loaded.score([q for q, _ in PAIRS], [p for _, p in PAIRS], batch_size=4)
    single = [alone(reranker, q, p) for q, p in PAIRS]
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)


def test_multi_label_classifier_is_refused(tokenizer, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, num_labels=3,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(tmp_path / "nli")
    tokenizer.save_pretrained(tmp_path / "nli")
    with pytest.raises(ConfigError, match="num_labels=1"):
        CrossEncoderReranker.from_pretrained(tmp_path / "nli")


def test_prefixes_are_applied_to_both_sides(tiny_model, tmp_path):
    reranker = make_reranker(tiny_model, tmp_path / "rr")
    reranker.settings.query_prefix, reranker.settings.passage_prefix = "query: ", "passage: "
    assert reranker.format_pair("q", "T", "x") == ("query: q", "passage: T x")


# ---------------------------------------------------------------------- LoRA and bitfit


def test_lora_trains_only_adapters_and_head_and_merges_to_the_same_scores(tiny_model, tmp_path):
    from peft import PeftModel

    reranker = make_reranker(tiny_model, tmp_path / "rr")
    total = sum(p.numel() for p in reranker.parameters())
    reranker.apply_lora(r=4, alpha=8, dropout=0.0)
    trainable = {n: p for n, p in reranker.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert any("classifier.modules_to_save" in n for n in trainable)  # the head trains in full
    # independent count: rank-4 A and B for query/key/value of 2 layers of width 32, + the head
    head = sum(p.numel() for n, p in tiny_head(reranker).items())
    assert sum(p.numel() for p in trainable.values()) == 2 * 3 * (4 * 32 + 32 * 4) + head
    assert sum(p.numel() for p in trainable.values()) < total / 5
    with torch.no_grad():  # as if trained: B (zero at init) and the head move
        for param in trainable.values():
            param.add_(0.2 * torch.randn_like(param))
    queries, passages = [q for q, _ in PAIRS], [p for _, p in PAIRS]
    peft_scores = reranker.score(queries, passages, activation=False)
    reranker.save_pretrained(tmp_path / "adapter")  # an adapter folder (a LoRA checkpoint)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapter" / "config.json").exists()
    # independently: the base + peft's own loader, not merged
    base = CrossEncoderReranker.from_backbone(tiny_model, RerankerConfig(max_len=64))
    base.model = PeftModel.from_pretrained(base.model, str(tmp_path / "adapter")).eval()
    np.testing.assert_allclose(
        base.score(queries, passages, activation=False), peft_scores, rtol=1e-5, atol=1e-6
    )
    loaded = CrossEncoderReranker.from_pretrained(tmp_path / "adapter")  # merged on load
    assert not loaded.is_lora
    scale = np.abs(peft_scores).max()
    np.testing.assert_allclose(
        loaded.score(queries, passages, activation=False), peft_scores, rtol=1e-4, atol=1e-5 * scale
    )
    reranker.merge_lora()
    assert not reranker.is_lora
    reranker.save_pretrained(tmp_path / "merged")
    merged = CrossEncoderReranker.from_pretrained(tmp_path / "merged")
    np.testing.assert_allclose(
        merged.score(queries, passages, activation=False), peft_scores, rtol=1e-4, atol=1e-5 * scale
    )


def tiny_head(reranker: CrossEncoderReranker) -> dict[str, torch.Tensor]:
    """The head parameters of the tiny BERT reranker: pooler and classifier (original copies)."""
    return {
        n: p
        for n, p in reranker.named_parameters()
        if ("pooler" in n or "classifier" in n) and "original_module" in n
    }


def test_bitfit_trains_biases_and_the_head_only(tiny_model, tmp_path):
    reranker = make_reranker(tiny_model, tmp_path / "rr")
    reranker.apply_bitfit()
    for name, param in reranker.named_parameters():
        expected = name.endswith("bias") or ".pooler." in name or ".classifier." in name
        assert param.requires_grad == expected, name


def test_lora_load_weights_restores_a_checkpoint(tiny_model, tmp_path):
    reranker = make_reranker(tiny_model, tmp_path / "rr")
    reranker.apply_lora(r=2)
    with torch.no_grad():
        for param in reranker.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn_like(param))
    reranker.save_pretrained(tmp_path / "ckpt")
    expected = reranker.score(["kinase"], ["an enzyme"], activation=False)
    other = make_reranker(tiny_model, tmp_path / "rr2")
    other.apply_lora(r=2)
    assert not np.allclose(other.score(["kinase"], ["an enzyme"], activation=False), expected)
    other.load_weights(tmp_path / "ckpt")
    np.testing.assert_allclose(
        other.score(["kinase"], ["an enzyme"], activation=False), expected, rtol=1e-5
    )


def test_set_precision_resolves_on_the_models_device(tiny_model, tmp_path):
    from densekit import precision

    reranker = make_reranker(tiny_model, tmp_path / "r")
    assert reranker.set_precision("fp32") == "fp32" and reranker.bf16 is False
    assert reranker.set_precision("bf16") == "bf16" and reranker.bf16 is True
    assert reranker.set_precision("auto") == precision.resolve("auto", "cpu")
