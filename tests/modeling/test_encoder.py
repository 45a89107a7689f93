"""DenseEncoder: settings precedence, save/load round trips, sentence-transformers parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from densekit.data.collator import tokenize
from densekit.modeling.config import CONFIG_NAME, folder_defaults, resolve_config
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.modeling.pooling import pool

TEXTS = [
    "The cat sat on the mat.",
    "A dense retriever maps queries and passages to vectors.",
    "short",
    "Mitochondria are the powerhouse of the cell, a claim often repeated in biology classes.",
]


def _vectors(encoder: DenseEncoder, tokenizer, texts=TEXTS, is_query=False, max_len=64):
    encoder.eval()
    with torch.no_grad():
        return encoder.encode(dict(tokenize(tokenizer, texts, max_len)), is_query=is_query)


def test_plain_hf_folder_gets_tevatron_fallbacks(tiny_model):
    encoder = DenseEncoder.from_pretrained(tiny_model)
    settings = encoder.settings
    assert (settings.pooling, settings.normalize, settings.temperature) == ("cls", False, 1.0)
    assert encoder.tied and encoder.pooler is None
    assert settings.base_model_name_or_path == tiny_model


def test_encode_equals_manual_forward(tiny_model, tokenizer):
    encoder = DenseEncoder.from_pretrained(tiny_model, pooling="mean", normalize=True)
    assert encoder.settings.temperature == 0.05  # normalized: the cosine default
    backbone = AutoModel.from_pretrained(tiny_model).eval()
    batch = tokenize(tokenizer, TEXTS, 64)
    with torch.no_grad():
        hidden = backbone(**batch).last_hidden_state
    expected = []
    for i in range(len(TEXTS)):
        n = int(batch["attention_mask"][i].sum())
        v = hidden[i, :n].mean(0)
        expected.append(v / v.norm())
    torch.testing.assert_close(_vectors(encoder, tokenizer), torch.stack(expected))


def test_right_padding_does_not_change_vectors(tiny_model, tokenizer):
    """A padded batch against single texts: other matmul shapes, so other CPU kernels; the
    unnormalized vectors agree to 1e-5 relatively and to 1e-5 of their largest entry."""
    encoder = DenseEncoder.from_pretrained(tiny_model, pooling="last")
    batched = _vectors(encoder, tokenizer)
    alone = torch.cat([_vectors(encoder, tokenizer, [t]) for t in TEXTS])
    atol = 1e-5 * max(1.0, alone.abs().max().item())
    torch.testing.assert_close(batched, alone, atol=atol, rtol=1e-5)


def test_tied_round_trip_with_pooler(tiny_model, tokenizer, tmp_path):
    encoder = DenseEncoder.from_pretrained(
        tiny_model, pooling="mean", normalize=True, add_pooler=True, query_prefix="q: "
    )
    assert encoder.pooler is not None and encoder.pooler.out_features == 32
    torch.nn.init.normal_(encoder.pooler.weight)  # make sure a reload cannot re-create it
    encoder.save_pretrained(tmp_path / "saved", tokenizer)
    saved = tmp_path / "saved"
    assert (saved / CONFIG_NAME).is_file() and (saved / "pooler.safetensors").is_file()
    reloaded = DenseEncoder.from_pretrained(str(saved))
    assert reloaded.settings.pooling == "mean" and reloaded.settings.normalize
    assert reloaded.settings.query_prefix == "q: "
    assert reloaded.settings.base_model_name_or_path == tiny_model
    for is_query in (True, False):
        torch.testing.assert_close(
            _vectors(reloaded, tokenizer, is_query=is_query),
            _vectors(encoder, tokenizer, is_query=is_query),
            rtol=0,
            atol=0,
        )


def test_untied_round_trip(tiny_model, tokenizer, tmp_path):
    encoder = DenseEncoder.from_pretrained(tiny_model, untie_encoder=True, pooling="cls")
    assert not encoder.tied
    with torch.no_grad():  # make the towers differ, as after training
        for param in encoder.passage_model.parameters():
            param.add_(0.01 * torch.randn_like(param))
    q_before = _vectors(encoder, tokenizer, is_query=True)
    p_before = _vectors(encoder, tokenizer, is_query=False)
    assert not torch.allclose(q_before, p_before)
    encoder.save_pretrained(tmp_path / "untied", tokenizer)
    assert (tmp_path / "untied" / "query_model" / "config.json").is_file()
    assert (tmp_path / "untied" / "passage_model" / "config.json").is_file()
    assert (tmp_path / "untied" / "router_config.json").is_file()  # ST loads both towers
    reloaded = DenseEncoder.from_pretrained(str(tmp_path / "untied"))
    assert not reloaded.tied and reloaded.settings.untie_encoder
    torch.testing.assert_close(_vectors(reloaded, tokenizer, is_query=True), q_before)
    torch.testing.assert_close(_vectors(reloaded, tokenizer, is_query=False), p_before)


def test_load_weights_restores_a_saved_state(tiny_model, tokenizer, tmp_path):
    encoder = DenseEncoder.from_pretrained(tiny_model, add_pooler=True)
    encoder.save_pretrained(tmp_path / "ckpt", tokenizer)
    expected = _vectors(encoder, tokenizer)
    with torch.no_grad():
        for param in encoder.parameters():
            param.zero_()
    assert not torch.allclose(_vectors(encoder, tokenizer), expected)
    encoder.load_weights(tmp_path / "ckpt")
    torch.testing.assert_close(_vectors(encoder, tokenizer), expected, rtol=0, atol=0)


def test_sentence_transformers_loads_tied_model(tiny_model, tokenizer, tmp_path):
    """sentence-transformers' batching and pooling against densekit's (other padding, so other
    CPU kernels): unit vectors, so 1e-5 is relative to their norm of 1."""
    from sentence_transformers import SentenceTransformer

    encoder = DenseEncoder.from_pretrained(
        tiny_model, pooling="mean", normalize=True, add_pooler=True
    )
    torch.nn.init.normal_(encoder.pooler.weight)
    encoder.save_pretrained(tmp_path / "st", tokenizer)
    model = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    st_vectors = torch.from_numpy(model.encode(TEXTS, convert_to_numpy=True))
    torch.testing.assert_close(st_vectors, _vectors(encoder, tokenizer), atol=1e-5, rtol=1e-5)


def test_bundled_minilm_defaults_and_sentence_transformers_parity(minilm):
    """sentence-transformers' batching and pooling against densekit's (other padding, so other
    CPU kernels): unit vectors, so 1e-5 is relative to their norm of 1."""
    from sentence_transformers import SentenceTransformer

    encoder = DenseEncoder.from_pretrained(minilm)
    assert encoder.settings.pooling == "mean"
    assert encoder.settings.normalize is True
    assert encoder.settings.temperature == 0.05
    tokenizer = load_tokenizer(minilm)
    ours = _vectors(encoder, tokenizer, max_len=256)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(len(TEXTS)))
    model = SentenceTransformer(minilm, device="cpu")
    theirs = torch.from_numpy(model.encode(TEXTS, convert_to_numpy=True))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_flags_override_folder_settings(minilm):
    defaults = folder_defaults(minilm)
    assert defaults["pooling"] == "mean" and defaults["normalize"] is True
    config = resolve_config(minilm, pooling="cls", normalize=False, temperature=None)
    assert (config.pooling, config.normalize, config.temperature) == ("cls", False, 1.0)


def test_densekit_config_wins_over_st_files(tiny_model, tokenizer, tmp_path):
    encoder = DenseEncoder.from_pretrained(tiny_model, pooling="last", temperature=0.02)
    encoder.save_pretrained(tmp_path / "m", tokenizer)
    saved = json.loads((Path(tmp_path) / "m" / CONFIG_NAME).read_text())
    assert saved["pooling"] == "last" and saved["temperature"] == 0.02
    pooling_cfg = json.loads((tmp_path / "m" / "1_Pooling" / "config.json").read_text())
    assert pooling_cfg["pooling_mode_lasttoken"] and not pooling_cfg["pooling_mode_mean_tokens"]
    reloaded = DenseEncoder.from_pretrained(str(tmp_path / "m"))
    assert reloaded.settings.pooling == "last" and reloaded.settings.temperature == 0.02


@pytest.mark.parametrize("mode", ["cls", "mean", "last"])
def test_encoder_uses_pool(tiny_model, tokenizer, mode):
    encoder = DenseEncoder.from_pretrained(tiny_model, pooling=mode).eval()
    batch = tokenize(tokenizer, TEXTS, 64)
    with torch.no_grad():
        hidden = encoder.query_model(**batch).last_hidden_state
        torch.testing.assert_close(
            encoder.encode(dict(batch), True), pool(hidden, batch["attention_mask"], mode)
        )
