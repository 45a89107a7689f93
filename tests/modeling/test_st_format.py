"""sentence-transformers folders of every form give densekit the vectors ST itself gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from densekit.errors import ConfigError
from densekit.inference.encode import encode_texts
from densekit.modeling import st_format
from densekit.modeling.encoder import DenseEncoder, load_tokenizer

TEXTS = [
    "A short query.",
    " ".join(["Protein folding kinetics depend on temperature and local structure."] * 40),
]


def _densekit_vectors(path: str, is_query: bool = False) -> np.ndarray:
    encoder = DenseEncoder.from_pretrained(path)
    return encode_texts(encoder, load_tokenizer(path), TEXTS, is_query, progress=False)


def _st_vectors(path: str) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu").encode(TEXTS, convert_to_numpy=True)


@pytest.fixture(scope="module")
def st6_folder(minilm, tmp_path_factory) -> str:
    """The bundled MiniLM as sentence-transformers 6 writes it: ``pooling_mode`` as a string and
    no ``max_seq_length`` (the length lives in the tokenizer config)."""
    from sentence_transformers import SentenceTransformer

    folder = tmp_path_factory.mktemp("st6") / "model"
    SentenceTransformer(minilm, device="cpu").save(str(folder))
    return str(folder)


def test_st6_folder_reads_pooling_string_and_tokenizer_length(st6_folder):
    settings = st_format.read_settings(st6_folder)
    assert settings["pooling"] == "mean" and settings["normalize"] is True
    assert settings["passage_max_len"] == 256
    cosine = (_densekit_vectors(st6_folder) * _st_vectors(st6_folder)).sum(axis=1)
    assert cosine.min() > 0.9999


def _st_with(minilm: str, folder, *extra) -> str:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    transformer = Transformer(minilm)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    SentenceTransformer(modules=[transformer, pooling, *extra], device="cpu").save(str(folder))
    return str(folder)


def test_dense_module_is_read_as_the_projection(minilm, tmp_path):
    """sentence-transformers' forward against densekit's (other batching and padding, so other
    CPU kernels) on unnormalized projections: 1e-4 of the vectors' largest entry."""
    from sentence_transformers.models import Dense

    torch.manual_seed(0)
    dense = Dense(384, 128, activation_function=torch.nn.Identity())
    path = _st_with(minilm, tmp_path / "dense", dense)
    vectors = _densekit_vectors(path)
    assert vectors.shape == (2, 128)
    expected = _st_vectors(path)
    np.testing.assert_allclose(vectors, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_unsupported_pooling_and_module_are_refused(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "max"}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="pooling 'max' is not supported"):
        st_format.read_settings(tmp_path)
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True})
    )
    assert st_format.read_settings(tmp_path)["pooling"] == "cls"
    modules.append({"idx": 2, "name": "2", "path": "", "type": "sentence_transformers.models.LSTM"})
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match=r"LSTM.*not supported"):
        st_format.read_settings(tmp_path)


def _both_ways(path: str, encoder: DenseEncoder, tokenizer) -> None:
    """ST's encode_query / encode_document equal densekit's query / passage vectors (other
    batching and padding, so other CPU kernels): 1e-4 of the vectors' largest entry."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu")
    for is_query, st_encode in ((True, model.encode_query), (False, model.encode_document)):
        ours = encode_texts(encoder, tokenizer, TEXTS, is_query, progress=False)
        atol = 1e-4 * max(1.0, np.abs(ours).max())
        np.testing.assert_allclose(st_encode(TEXTS, convert_to_numpy=True), ours, atol=atol)


def test_query_length_differing_from_passage_length(minilm, tmp_path):
    encoder = DenseEncoder.from_pretrained(minilm, query_max_len=8, passage_max_len=32)
    tokenizer = load_tokenizer(minilm)
    encoder.save_pretrained(tmp_path / "m", tokenizer=tokenizer)
    assert (tmp_path / "m" / "router_config.json").is_file()
    _both_ways(str(tmp_path / "m"), encoder, tokenizer)
    short = encode_texts(encoder, tokenizer, TEXTS, True, progress=False)
    long = encode_texts(encoder, tokenizer, TEXTS, False, progress=False)
    assert not np.allclose(short[1], long[1], atol=1e-3)  # the lengths really differ


def test_untied_towers_load_in_sentence_transformers(minilm, tmp_path):
    encoder = DenseEncoder.from_pretrained(minilm, untie_encoder=True)
    with torch.no_grad():  # make the towers differ
        for param in encoder.passage_model.parameters():
            param.mul_(0.9)
    tokenizer = load_tokenizer(minilm)
    encoder.save_pretrained(tmp_path / "u", tokenizer=tokenizer)
    _both_ways(str(tmp_path / "u"), encoder, tokenizer)
    reloaded = DenseEncoder.from_pretrained(str(tmp_path / "u"))
    assert not reloaded.tied


def test_lora_folder_says_to_merge(tiny_model, tmp_path, caplog):
    import logging

    from densekit.modeling.factory import build_encoder

    encoder = build_encoder(tiny_model, fine_tune_type="lora", pooling="mean")
    with caplog.at_level(logging.INFO):
        encoder.save_pretrained(tmp_path / "l", tokenizer=load_tokenizer(tiny_model))
    assert "densekit merge-lora" in caplog.text
    assert not (tmp_path / "l" / "modules.json").exists()
