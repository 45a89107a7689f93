"""The encoder registry: a backend added by one registration line encodes through
``densekit encode``; missing packages are listed with their install hint; the shared batching
adapter gives every text the vector the torch encoder gives it alone."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from densekit.commands import main as cli
from densekit.encoders import (
    EncoderSpec,
    TextEncoder,
    available_backends,
    backend_names,
    load_encoder,
    register_backend,
)
from densekit.encoders.registry import _BACKENDS
from densekit.errors import ConfigError
from densekit.modeling.config import EncoderConfig
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.retrieval.embeddings import load_embeddings, read_meta

DIM = 8


def _hashed(text: str) -> np.ndarray:
    """A vector from the text's bytes alone: what the toy backend must write for it."""
    digest = hashlib.sha256(text.encode()).digest()
    return np.frombuffer(digest[: DIM * 4], dtype=np.uint32).astype(np.float32) / 2**32


class ToyEncoder:
    """The smallest TextEncoder: hashes the formatted text (prefixes from the spec)."""

    backend = "toy"

    def __init__(self, spec: EncoderSpec) -> None:
        self.settings = EncoderConfig(query_prefix=spec.overrides.get("query_prefix") or "q: ")

    @property
    def dim(self) -> int:
        return DIM

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return np.stack([_hashed(self.settings.format_query(t)) for t in texts])

    def encode_passages(self, texts, titles=None, batch_size: int = 64) -> np.ndarray:
        titles = titles or [None] * len(texts)
        pairs = zip(titles, texts, strict=True)
        return np.stack([_hashed(self.settings.format_passage(t, h)) for h, t in pairs])


def load(spec: EncoderSpec) -> ToyEncoder:
    return ToyEncoder(spec)


@pytest.fixture
def toy_backend():
    register_backend("toy", __name__)
    yield "toy"
    _BACKENDS.pop("toy")


def test_builtin_backends_are_registered():
    assert {"torch", "onnx", "openvino", "jax"} <= set(backend_names())
    assert available_backends()["torch"] == "available"


def test_a_registered_backend_encodes_through_the_command(toy_backend, tmp_path, write_jsonl):
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"_id": f"d{i}", "title": f"T{i}", "text": f"passage number {i}"} for i in range(5)],
    )
    queries = write_jsonl(
        tmp_path / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(3)]
    )
    base = [
        "encode",
        "--backend",
        "toy",
        "--model_name_or_path",
        str(tmp_path),
        "--batch_size",
        "2",
    ]
    assert (
        cli([*base, "--dataset_path", str(corpus), "--encode_output_path", str(tmp_path / "c")])
        == 0
    )
    assert cli([*base, "--dataset_path", str(queries), "--encode_output_path", str(tmp_path / "q"),
                "--encode_is_query", "--query_prefix", "find: "]) == 0  # fmt: skip
    ids, vectors = load_embeddings(tmp_path / "c")
    assert ids == [f"d{i}" for i in range(5)]
    expected = np.stack([_hashed(f"T{i} passage number {i}") for i in range(5)])
    np.testing.assert_array_equal(vectors, expected)
    ids, vectors = load_embeddings(tmp_path / "q")
    np.testing.assert_array_equal(
        vectors, np.stack([_hashed(f"find: query {i}") for i in range(3)])
    )
    assert read_meta(tmp_path / "c")["backend"] == "toy"
    assert isinstance(load_encoder(EncoderSpec(str(tmp_path), backend="toy")), TextEncoder)


def test_a_backend_without_its_packages_is_listed_with_its_hint(tmp_path, capsys):
    register_backend("absent", "nowhere", requires=("no_such_package_xyz",), extra="absent")
    try:
        assert available_backends()["absent"] == (
            "missing no_such_package_xyz: pip install 'densekit[absent]'"
        )
        with pytest.raises(ConfigError, match=r"densekit\[absent\]"):
            load_encoder(EncoderSpec("m", backend="absent"))
        code = cli(["encode", "--backend", "absent", "--dataset_path", str(tmp_path / "x"),
                    "--encode_output_path", str(tmp_path / "out")])  # fmt: skip
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no_such_package_xyz" in err[0]
        assert not (tmp_path / "out").exists()
    finally:
        _BACKENDS.pop("absent")


def test_torch_backend_equals_each_text_encoded_alone(tiny_model):
    """Batched, length-sorted, padded encoding (one kernel run per batch) against one text per
    forward pass without padding; the two run different matmul shapes, so relative 1e-5."""
    encoder = load_encoder(EncoderSpec(tiny_model, overrides={"query_prefix": "q: "}))
    model = DenseEncoder.from_pretrained(tiny_model, query_prefix="q: ").eval()
    tokenizer = load_tokenizer(tiny_model)
    texts = ["a short one", "a much longer text " * 6, "mid length text here", "x"]
    titles = ["T", None, "", "Title"]
    got_q = encoder.encode_queries(texts, batch_size=3)
    got_p = encoder.encode_passages(texts, titles, batch_size=3)
    with torch.inference_mode():
        for row, (text, title) in enumerate(zip(texts, titles, strict=True)):
            for is_query, got, formatted in (
                (True, got_q, "q: " + text),
                (False, got_p, f"{title} {text}" if title else text),
            ):
                max_len = (
                    model.settings.query_max_len if is_query else model.settings.passage_max_len
                )
                batch = tokenizer(
                    [formatted], truncation=True, max_length=max_len, return_tensors="pt"
                )
                alone = model.encode(dict(batch), is_query=is_query)[0].numpy()
                scale = np.abs(alone).max()
                np.testing.assert_allclose(got[row], alone, rtol=1e-5, atol=1e-5 * scale)
    assert encoder.dim == got_q.shape[1]
    assert encoder.encode_queries([]).shape == (0, encoder.dim)


def test_encode_offers_registered_backends(toy_backend):
    from densekit.commands.encode import build_parser

    assert "toy" in build_parser()._option_string_actions["--backend"].choices
