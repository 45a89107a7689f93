"""The Flax encoder against Hugging Face's torch models: same vectors, weights written back
unchanged, untied towers and projections saved as the torch encoder reads them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from densekit.inference.encode import encode_texts
from densekit.modeling.encoder import DenseEncoder, load_tokenizer

TEXTS = [
    "what does insulin do in the liver?",
    "Protein kinase C. A much longer passage about kinases, tumours and their growth " * 3,
    "x",
    "vaccine neuron virus enzyme",
    "Short one.",
]


def _assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    """XLA's CPU kernels against torch's (ATen/oneDNN, picked per CPU) on float32 vectors: 1e-4
    of the largest entry, so unnormalized vectors (cls pooling) get a tolerance to their scale."""
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def _both(path: str, texts: list[str], is_query: bool, **settings):
    """Torch's and JAX's vectors of ``texts``, each formatted by its own encoder's settings."""
    from densekit.jax.encoder import JaxEncoder

    out = []
    for encoder in (
        DenseEncoder.from_pretrained(path, **settings).eval(),
        JaxEncoder.from_pretrained(path, **settings),
    ):
        tokenizer = load_tokenizer(path, encoder.settings.padding_side)
        fmt = encoder.format_query if is_query else encoder.format_passage
        formatted = [fmt(t) for t in texts]
        out.append(encode_texts(encoder, tokenizer, formatted, is_query, 8, progress=False))
    return out[0], out[1], encoder


@pytest.mark.parametrize(
    ("settings", "is_query"),
    [
        ({"query_prefix": "query: "}, True),  # the folder's mean pooling + normalization
        ({"pooling": "cls", "normalize": False, "passage_prefix": "passage: "}, False),
    ],
)
def test_minilm_vectors_match_torch(jax_cpu, minilm, settings, is_query):
    """Crosses XLA's and torch's CPU kernels over MiniLM's six layers (see _assert_close)."""
    expected, got, encoder = _both(minilm, TEXTS, is_query, **settings)
    assert encoder.settings.pooling == settings.get("pooling", "mean")
    assert got.shape == expected.shape == (len(TEXTS), 384)
    _assert_close(got, expected)
    norms = np.linalg.norm(got, axis=1)
    assert np.allclose(norms, 1, atol=1e-5) == encoder.settings.normalize


def test_roberta_positions_match_torch(jax_cpu, tokenizer, tmp_path):
    """RoBERTa numbers positions after the padding index. Crosses XLA's and torch's CPU
    kernels (see _assert_close)."""
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(1)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_token_id,
        type_vocab_size=1,
    )
    RobertaModel(config).eval().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    expected, got, _ = _both(str(tmp_path), TEXTS, False, pooling="cls")
    _assert_close(got, expected)


def test_left_padding_matches_torch(jax_cpu, tiny_model):
    """Crosses XLA's and torch's CPU kernels (see _assert_close)."""
    expected, got, _ = _both(tiny_model, TEXTS, True, pooling="last", padding_side="left")
    _assert_close(got, expected)


def test_weights_are_written_back_unchanged(jax_cpu, minilm, tmp_path):
    from densekit.jax.weights import read_tower, write_tower

    tower = read_tower(minilm)
    write_tower(tower, tower.params, tmp_path)
    before = load_file(f"{minilm}/model.safetensors")
    after = load_file(str(tmp_path / "model.safetensors"))
    assert set(after) == set(before)  # position_ids buffer kept, names unchanged
    for name, value in before.items():
        assert torch.equal(after[name].to(value.dtype), value), name


def test_untied_towers_and_projection_load_in_torch(jax_cpu, tiny_model, tokenizer, tmp_path):
    """Trained-apart towers and a new projection, saved by JAX, encode alike in torch (XLA's
    and torch's CPU kernels crossed, see _assert_close)."""
    import jax

    from densekit.jax.encoder import JaxEncoder

    encoder = JaxEncoder.from_pretrained(
        tiny_model, untie_encoder=True, add_pooler=True, projection_out_dim=16, pooling="mean"
    )
    encoder.params["passage"] = jax.tree.map(lambda x: x * 1.01, encoder.params["passage"])
    encoder.save_pretrained(tmp_path, tokenizer)
    assert (tmp_path / "query_model").is_dir() and (tmp_path / "passage_model").is_dir()
    reloaded = DenseEncoder.from_pretrained(str(tmp_path)).eval()
    assert not reloaded.tied and reloaded.pooler.out_features == 16
    for is_query in (True, False):
        expected = encode_texts(reloaded, tokenizer, TEXTS, is_query, 8, progress=False)
        got = encode_texts(encoder, tokenizer, TEXTS, is_query, 8, progress=False)
        _assert_close(got, expected)
    assert not np.allclose(
        encode_texts(encoder, tokenizer, TEXTS, True, 8, progress=False),
        encode_texts(encoder, tokenizer, TEXTS, False, 8, progress=False),
    )


def test_bf16_compute_stays_close_to_fp32(jax_cpu, tiny_model, tokenizer):
    """XLA's bf16 CPU path against its fp32 one (which bf16 kernels run varies by CPU): bf16
    keeps ~3 significant digits, so unit vectors are compared by direction (cosine > 0.99)."""
    import jax.numpy as jnp

    from densekit.jax.encoder import JaxEncoder

    fp32 = JaxEncoder.from_pretrained(tiny_model, pooling="mean", normalize=True)
    bf16 = JaxEncoder.from_pretrained(
        tiny_model, pooling="mean", normalize=True, dtype=jnp.bfloat16
    )
    a = encode_texts(fp32, tokenizer, TEXTS, False, 8, progress=False)
    b = encode_texts(bf16, tokenizer, TEXTS, False, 8, progress=False)
    assert not np.array_equal(a, b)  # it did compute in bf16
    assert (a * b).sum(axis=1).min() > 0.99


def test_unsupported_model_is_one_line(jax_cpu, tiny_decoder):
    from densekit.errors import ConfigError
    from densekit.jax.encoder import JaxEncoder

    with pytest.raises(ConfigError, match="model_type 'llama' has no Flax encoder"):
        JaxEncoder.from_pretrained(tiny_decoder("llama"))


def _st_dense_folder(tiny_model: str, folder, activation=None) -> str:
    """The tiny BERT as sentence-transformers writes it: mean Pooling, a 32 -> 16 Dense
    (``None``: ST's default activation, Tanh), Normalize (as tests/modeling/test_folder_kinds)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    transformer = Transformer(tiny_model)
    torch.manual_seed(5)
    dense = Dense(32, 16) if activation is None else Dense(32, 16, activation_function=activation)
    modules = [transformer, Pooling(32, "mean"), dense, Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return str(folder)


def _assert_rel_close(got: np.ndarray, expected: np.ndarray) -> None:
    """Relative to the vectors' magnitude (XLA's and torch's CPU kernels differ in last bits)."""
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(
    "activation", [None, torch.nn.GELU(), torch.nn.ReLU()], ids=["tanh", "gelu", "relu"]
)
def test_dense_activation_vectors_match_torch(jax_cpu, tiny_model, tmp_path, activation):
    path = _st_dense_folder(tiny_model, tmp_path / "st", activation)
    expected, got, encoder = _both(path, TEXTS, False)
    name = "Tanh" if activation is None else type(activation).__name__
    assert encoder.head.projection_activation == encoder.settings.projection_activation == name
    assert got.shape == expected.shape == (len(TEXTS), 16)
    _assert_rel_close(got, expected)


def test_unknown_dense_activation_is_one_line(jax_cpu):
    from densekit.errors import ConfigError
    from densekit.jax.bert import Head

    with pytest.raises(ConfigError, match="projection activation Softmax has no JAX counterpart"):
        Head("mean", True, "Softmax")
