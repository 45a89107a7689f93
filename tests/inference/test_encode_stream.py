"""Streaming encode: windows read from Arrow, vectors written into the .npy as they come.

Every check compares against the model run one text at a time (no padding, no batching, no
sorting), never against the streaming path itself. Both are torch, but padded batches and single
texts run matmuls of other shapes, for which oneDNN/MKL pick other kernels and summation orders
(per CPU: AVX2, AVX-512, AMX), so float32 vectors agree to 2e-5 of their largest entry, not bit
for bit (see ``_assert_close``).
"""

from __future__ import annotations

import random

import datasets
import numpy as np
import pytest
import torch

from densekit.commands import main as cli
from densekit.inference.encode import encode_table, encode_table_in_memory, encode_texts
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.retrieval.embeddings import load_embeddings, read_meta

WORDS = [
    "cell",
    "gene",
    "protein",
    "tissue",
    "signal",
    "immune",
    "receptor",
    "growth",
    "dose",
    "trial",
    "risk",
    "pathway",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Many tiny forward passes: one thread avoids OpenMP spinning on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _corpus(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "_id": f"d{i}",
            "title": " ".join(rng.choices(WORDS, k=rng.randint(0, 3))),
            "text": " ".join(rng.choices(WORDS, k=rng.randint(1, 40))),
        }
        for i in range(count)
    ]


def _assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    """Unnormalized (cls) vectors reach a few units: the tolerance scales with them."""
    np.testing.assert_allclose(got, expected, atol=2e-5 * max(1.0, np.abs(expected).max()))


def _one_by_one(model: str, texts: list[str], is_query: bool, **flags) -> np.ndarray:
    encoder = DenseEncoder.from_pretrained(model, **flags).eval()
    tokenizer = load_tokenizer(model)
    max_len = encoder.settings.query_max_len if is_query else encoder.settings.passage_max_len
    rows = []
    with torch.no_grad():
        for text in texts:
            batch = tokenizer([text], truncation=True, max_length=max_len, return_tensors="pt")
            rows.append(encoder.encode(dict(batch), is_query=is_query)[0].numpy())
    return np.stack(rows)


def test_streamed_encode_of_several_windows_equals_text_by_text(tiny_model, tmp_path, write_jsonl):
    # batch 2 -> windows of 128 texts: 300 passages are 3 windows, the last one partial
    rows = _corpus(300)
    path = write_jsonl(tmp_path / "corpus.jsonl", rows)
    out = tmp_path / "enc"
    argv = ["encode", "--model_name_or_path", tiny_model, "--dataset_path", str(path)]
    argv += ["--encode_output_path", str(out), "--batch_size", "2", "--passage_prefix", "P: "]
    assert cli(argv) == 0
    ids, vectors = load_embeddings(out)
    assert ids == [row["_id"] for row in rows]
    texts = ["P: " + (f"{r['title']} {r['text']}" if r["title"] else r["text"]) for r in rows]
    expected = _one_by_one(tiny_model, texts, is_query=False, passage_prefix="P: ")
    _assert_close(vectors, expected)
    assert read_meta(out)["count"] == 300
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left over


def test_truncated_float16_output_is_cut_renormalized_and_cast(tiny_model, tmp_path, write_jsonl):
    rows = _corpus(40, seed=1)
    path = write_jsonl(tmp_path / "corpus.jsonl", rows)
    out = tmp_path / "enc"
    argv = ["encode", "--model_name_or_path", tiny_model, "--dataset_path", str(path)]
    argv += ["--encode_output_path", str(out), "--batch_size", "1", "--normalize"]
    assert cli([*argv, "--truncate_dim", "8", "--embedding_dtype", "float16"]) == 0
    _, vectors = load_embeddings(out)
    assert vectors.dtype == np.float16 and vectors.shape == (40, 8)
    texts = [f"{r['title']} {r['text']}" if r["title"] else r["text"] for r in rows]
    full = _one_by_one(tiny_model, texts, is_query=False, normalize=True)[:, :8]
    cut = full / np.linalg.norm(full, axis=1, keepdims=True)
    # unit vectors stored in float16 (half an ulp below 1 is 2.4e-4)
    np.testing.assert_allclose(vectors.astype(np.float32), cut, atol=2e-3)


class _NoParameters:
    """The encoder protocol only: ``settings`` and ``encode`` (as an exported-model runner)."""

    def __init__(self, encoder: DenseEncoder) -> None:
        self.settings, self._encoder = encoder.settings, encoder

    def encode(self, batch: dict[str, torch.Tensor], is_query: bool) -> torch.Tensor:
        return self._encoder.encode(batch, is_query)


def test_any_object_with_settings_and_encode_streams_like_the_torch_encoder(tiny_model):
    table = datasets.Dataset.from_list(
        [{"query_id": f"q{i}", "text": " ".join(WORDS[: 1 + i % 9])} for i in range(40)]
    )
    encoder = DenseEncoder.from_pretrained(tiny_model, query_prefix="Q: ").eval()
    tokenizer = load_tokenizer(tiny_model)
    windows = list(
        encode_table(_NoParameters(encoder), tokenizer, table, True, batch_size=4, window_batches=3)
    )
    assert [len(ids) for ids, _ in windows] == [12, 12, 12, 4]
    ids = [i for window, _ in windows for i in window]
    assert ids == table["query_id"]
    vectors = np.concatenate([v for _, v in windows])
    texts = ["Q: " + text for text in table["text"]]
    expected = _one_by_one(tiny_model, texts, is_query=True, query_prefix="Q: ")
    _assert_close(vectors, expected)
    _, in_memory = encode_table_in_memory(encoder, tokenizer, table, True, progress=False)
    _assert_close(in_memory, expected)
    _assert_close(
        encode_texts(encoder, tokenizer, texts, True, batch_size=4, progress=False), expected
    )


def test_bad_batch_size_is_one_clear_error(tiny_model, tmp_path, write_jsonl, capsys):
    path = write_jsonl(tmp_path / "corpus.jsonl", _corpus(3))
    argv = ["encode", "--model_name_or_path", tiny_model, "--dataset_path", str(path)]
    assert cli([*argv, "--encode_output_path", str(tmp_path / "o"), "--batch_size", "0"]) == 2
    assert "--batch_size must be positive" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_empty_table_yields_no_window(tiny_model):
    table = datasets.Dataset.from_dict({"docid": [], "title": [], "text": []})
    encoder = DenseEncoder.from_pretrained(tiny_model)
    assert list(encode_table(encoder, load_tokenizer(tiny_model), table, False)) == []
