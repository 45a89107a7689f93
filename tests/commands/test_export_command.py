"""``densekit export`` and ``densekit encode --backend``: the command lines a CPU user runs.

The oracle is ``densekit encode`` on the torch backend, a separate run over the same corpus.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from densekit.commands import main as cli
from densekit.inference.backends import EXPORT_ROOT
from densekit.retrieval.embeddings import load_embeddings


@pytest.fixture
def model(tiny_model, tmp_path) -> str:
    """A private copy of the tiny BERT: exports are written beside the model."""
    return str(shutil.copytree(tiny_model, tmp_path / "model"))


@pytest.fixture
def corpus(tmp_path, write_jsonl) -> str:
    words = ["kinase", "insulin", "vaccine", "cell", "receptor", "protein", "gene", "tumour"]
    rows = [
        {"_id": f"d{i}", "title": words[i % 8], "text": " ".join(words[: 1 + i % 8] * (1 + i % 3))}
        for i in range(23)
    ]
    return str(write_jsonl(tmp_path / "corpus.jsonl", rows))


def _encode(model: str, corpus: str, out: Path, *flags: str) -> int:
    return cli(
        ["encode", "--model_name_or_path", model, "--dataset_path", corpus,
         "--encode_output_path", str(out), "--batch_size", "5", *flags]
    )  # fmt: skip


def _one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("densekit: error:"), err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_export_then_encode_equals_torch_encode(model, corpus, tmp_path, capsys, backend):
    """Crosses torch's fp32 CPU kernels with ONNX Runtime's (MLAS) or OpenVINO's (oneDNN), each
    picked per CPU: unnormalized (cls) vectors agree to 1e-4 of their largest entry."""
    assert cli(["export", "--model_name_or_path", model, "--format", backend]) == 0
    assert "exported" in capsys.readouterr().out
    assert cli(["export", "--model_name_or_path", model, "--format", backend]) == 0
    assert "reused" in capsys.readouterr().out
    assert _encode(model, corpus, tmp_path / "torch") == 0
    assert _encode(model, corpus, tmp_path / backend, "--backend", backend) == 0
    ids_t, vec_t = load_embeddings(tmp_path / "torch")
    ids_b, vec_b = load_embeddings(tmp_path / backend)
    assert ids_b == ids_t and vec_b.shape == (23, 32)
    np.testing.assert_allclose(vec_b, vec_t, atol=1e-4 * max(1.0, np.abs(vec_t).max()))
    meta = json.loads((tmp_path / backend / "meta.json").read_text())
    assert meta["backend"] == f"{backend}-fp32"


def test_openvino_int8_calibrates_on_the_corpus_it_encodes(model, corpus, tmp_path):
    """The command's path: the corpus given is the calibration sample (the bundled MiniLM's
    int8 quality is test_backends'; the tiny BERT keeps this test to seconds). OpenVINO's int8
    kernels (VNNI/AMX or not, per CPU) against torch's fp32 ones: held by direction (cosine)."""
    out = tmp_path / "int8"
    assert _encode(model, corpus, out, "--backend", "openvino", "--quantize", "int8") == 0
    assert _encode(model, corpus, tmp_path / "fp32") == 0
    export_meta = json.loads(
        (Path(model) / EXPORT_ROOT / "openvino-int8" / "meta.json").read_text()
    )
    assert export_meta["calibration_texts"] == 23  # the whole (small) corpus was the sample
    got, want = load_embeddings(out)[1], load_embeddings(tmp_path / "fp32")[1]
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() > 0.95 and np.abs(got - want).max() > 1e-4, cosine.min()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--quantize", "int8"], "need --backend onnx or openvino"),
        (["--export_dir", "x"], "need --backend onnx or openvino"),
        (["--backend", "onnx", "--bf16"], "runs on CPU in fp32"),
        (["--backend", "openvino", "--device", "cuda"], "runs on CPU in fp32"),
    ],
)
def test_encode_backend_flags_that_cannot_go_together(
    model, corpus, tmp_path, capsys, flags, needle
):
    assert _encode(model, corpus, tmp_path / "out", *flags) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / "out").exists() and not (Path(model) / EXPORT_ROOT).exists()


def test_openvino_int8_export_needs_a_corpus(model, capsys):
    assert cli(["export", "--model_name_or_path", model, "--format", "openvino",
                "--quantize", "int8"]) == 2  # fmt: skip
    _one_line_error(capsys, "--dataset_path")
    assert not (Path(model) / EXPORT_ROOT).exists()


def test_missing_runtime_is_one_line_and_writes_nothing(model, corpus, tmp_path, capsys):
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "onnxruntime", None)  # the import now fails
        assert _encode(model, corpus, tmp_path / "out", "--backend", "onnx") == 2
    _one_line_error(capsys, "pip install 'densekit[onnx]'")
    assert not (tmp_path / "out").exists()
    assert not list((Path(model) / EXPORT_ROOT).glob("onnx-fp32*"))


def test_decoder_only_model_is_refused_before_loading(tiny_decoder, capsys):
    path = tiny_decoder("llama")
    capsys.readouterr()  # the fixture's own output
    assert cli(["export", "--model_name_or_path", path, "--format", "onnx"]) == 2
    _one_line_error(capsys, "decoder-only", "--backend torch")
