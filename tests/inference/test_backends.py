"""ONNX Runtime / OpenVINO backends: vectors against the torch model run text by text.

The oracle is the torch encoder on one text at a time (no padding, batching or sorting); the
backends run through ``encode_texts`` with small batches, so batching, length sorting,
truncation, prefixes, EOS appending, pooling, projection and normalization are all exercised.

The fp32 comparisons cross torch's CPU kernels (ATen/oneDNN) with ONNX Runtime's (MLAS) or
OpenVINO's (oneDNN, with its own fusions), each picked per CPU (AVX2, AVX-512, AMX): they agree
to 1e-4 of the vectors' largest entry (see ``_assert_close``), int8 ones by direction only.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import SCIFACT
from safetensors.torch import load_file, save_file

from densekit.errors import ConfigError
from densekit.inference.backends import EXPORT_ROOT, ExportSpec, ensure_export, load_backend
from densekit.inference.backends.exports import corpus_sample
from densekit.inference.encode import encode_texts
from densekit.modeling.encoder import DenseEncoder, load_tokenizer

BACKENDS = ["onnx", "openvino"]
QUERIES = ["what do kinases do", "Insulin and T cells?", "vaccine", "a longer query " * 9]


def _scifact(start: int, count: int) -> list[str]:
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(start + count), handle, strict=False)]
    return [f"{row['title']} {row['text'][:600]}" for row in rows[start:]]


def _one_by_one(encoder, tokenizer, texts: list[str], is_query: bool) -> np.ndarray:
    """Independent oracle: the torch encoder on each text alone, formatted and cut by hand."""
    settings = encoder.settings
    max_len = settings.query_max_len if is_query else settings.passage_max_len
    eos = settings.append_eos_token
    rows = []
    with torch.no_grad():
        for text in texts:
            text = settings.format_query(text) if is_query else settings.format_passage(text)
            ids = tokenizer(text, truncation=True, max_length=max_len - eos)["input_ids"]
            ids = [*ids, tokenizer.eos_token_id] if eos else ids
            mask = torch.ones(1, len(ids), dtype=torch.long)
            batch = {"input_ids": torch.tensor([ids]), "attention_mask": mask}
            rows.append(encoder.encode(batch, is_query=is_query)[0].numpy())
    return np.stack(rows)


def _assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    """float32 vectors from two runtimes: 1e-4 of the largest entry (1 for unit vectors)."""
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def _encode(encoder, tokenizer, texts: list[str], is_query: bool) -> np.ndarray:
    fmt = encoder.settings.format_query if is_query else encoder.settings.format_passage
    return encode_texts(encoder, tokenizer, [fmt(t) for t in texts], is_query, 3, progress=False)


def _linked_copy(source: str, folder: Path) -> str:
    """A model folder of symlinks: exports land in the copy, the original stays untouched."""
    folder.mkdir()
    for item in Path(source).iterdir():
        (folder / item.name).symlink_to(item)
    return str(folder)


@pytest.fixture
def tiny_eos(tiny_model, tmp_path, tokenizer) -> str:
    """The tiny BERT in a folder of its own, its tokenizer given [SEP] as the EOS token."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    for item in Path(tiny_model).iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    tok = type(tokenizer).from_pretrained(tiny_model)
    tok.eos_token = "[SEP]"
    tok.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp32_untied_tiny_bert_equals_torch_text_by_text(tiny_eos, tmp_path, backend):
    """Untied towers (both exported), a projection, mean pooling, prefixes, truncation, EOS.
    Crosses torch's fp32 CPU kernels with the backend's (see the module docstring)."""
    flags = dict(pooling="mean", normalize=True, query_prefix="query: ", passage_prefix="doc: ")
    flags |= dict(passage_max_len=12, append_eos_token=True, untie_encoder=True)
    torch.manual_seed(1)
    encoder = DenseEncoder.from_pretrained(tiny_eos, projection_out_dim=16, **flags)
    with torch.no_grad():
        for param in encoder.passage_model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    folder = str(tmp_path / "untied")
    encoder.save_pretrained(folder, load_tokenizer(tiny_eos))
    encoder = DenseEncoder.from_pretrained(folder).eval()
    tokenizer = load_tokenizer(folder)
    passages = _scifact(0, 8)
    expected_p = _one_by_one(encoder, tokenizer, passages, False)
    expected_q = _one_by_one(encoder, tokenizer, QUERIES, True)
    exported = load_backend(encoder, tokenizer, folder, backend)
    _assert_close(_encode(exported, tokenizer, passages, False), expected_p)
    _assert_close(_encode(exported, tokenizer, QUERIES, True), expected_q)
    assert expected_p.shape == (8, 16)
    # the passage tower really differs: the query tower on passages gives other vectors
    as_query = _encode(exported, tokenizer, passages[:3], True)
    assert np.abs(as_query - expected_p[:3]).max() > 1e-2


@pytest.fixture(scope="module")
def minilm_run(minilm, tmp_path_factory):
    """A linked copy of the bundled MiniLM, its encoder, tokenizer and the torch oracle."""
    folder = _linked_copy(minilm, tmp_path_factory.mktemp("minilm") / "model")
    encoder = DenseEncoder.from_pretrained(folder).eval()
    tokenizer = load_tokenizer(folder)
    passages = _scifact(0, 12)
    return {
        "path": folder,
        "encoder": encoder,
        "tokenizer": tokenizer,
        "passages": passages,
        "p": _one_by_one(encoder, tokenizer, passages, False),
        "q": _one_by_one(encoder, tokenizer, QUERIES, True),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp32_minilm_equals_torch(minilm_run, backend):
    """Crosses torch's fp32 CPU kernels with the backend's over MiniLM's six layers."""
    run = minilm_run
    exported = load_backend(run["encoder"], run["tokenizer"], run["path"], backend)
    got_p = _encode(exported, run["tokenizer"], run["passages"], False)
    _assert_close(got_p, run["p"])
    got_q = _encode(exported, run["tokenizer"], QUERIES, True)
    _assert_close(got_q, run["q"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_minilm_keeps_direction(minilm_run, backend):
    """The backend's int8 kernels (VNNI/AMX or not, per CPU) against torch's fp32 ones:
    quantisation error dwarfs kernel differences, so only the direction (cosine) is held."""
    run = minilm_run
    calibration = _scifact(100, 24)  # other passages of the same corpus
    exported = load_backend(
        run["encoder"], run["tokenizer"], run["path"], backend, "int8", None, calibration
    )
    got = _encode(exported, run["tokenizer"], run["passages"], False)
    cosine = (got * run["p"]).sum(1) / np.linalg.norm(got, axis=1)  # the oracle is unit-norm
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.97, (cosine.mean(), cosine.min())
    assert np.abs(got - run["p"]).max() > 1e-4  # really quantised, not the fp32 graph


def _rewrite_weights(folder: str, scale: float) -> None:
    path = Path(folder) / "model.safetensors"
    tensors = load_file(path)
    tensors = {k: v * scale if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, path, metadata={"format": "pt"})


def test_export_is_reused_then_redone_when_the_weights_change(tiny_eos):
    tokenizer = load_tokenizer(tiny_eos)
    spec = ExportSpec("onnx")
    encoder = DenseEncoder.from_pretrained(tiny_eos).eval()
    folder, status = ensure_export(encoder, tokenizer, tiny_eos, spec)
    assert status == "exported" and folder == Path(tiny_eos) / EXPORT_ROOT / "onnx-fp32"
    stamp = (folder / "model.onnx").stat().st_mtime_ns
    again = DenseEncoder.from_pretrained(tiny_eos).eval()
    assert ensure_export(again, tokenizer, tiny_eos, spec) == (folder, "reused")
    assert (folder / "model.onnx").stat().st_mtime_ns == stamp

    _rewrite_weights(tiny_eos, 0.9)
    changed = DenseEncoder.from_pretrained(tiny_eos).eval()
    exported = load_backend(changed, tokenizer, tiny_eos, "onnx")
    assert json.loads((folder / "meta.json").read_text())["fingerprint"] != ""
    texts = _scifact(0, 4)
    # ONNX Runtime's fp32 kernels against torch's, on unnormalized (cls) vectors
    _assert_close(
        _encode(exported, tokenizer, texts, False), _one_by_one(changed, tokenizer, texts, False)
    )
    assert not [p for p in Path(folder).parent.iterdir() if p.name.endswith((".tmp", ".old"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_pooling_is_traced_into_the_export_and_a_changed_one_exports_again(tiny_eos, backend):
    """The graph ends at the pooling, so ``--pooling`` over the folder's setting is part of the
    export's stamp: each mode gives torch's vectors text by text (right-padded batches of
    different lengths), and switching mode exports again instead of reusing the other graph."""
    tokenizer = load_tokenizer(tiny_eos)
    texts = _scifact(0, 5)
    statuses, kinds = [], []
    for pooling in ("cls", "mean", "last", "cls"):
        encoder = DenseEncoder.from_pretrained(tiny_eos, pooling=pooling).eval()
        spec = ExportSpec(backend)
        folder, status = ensure_export(encoder, tokenizer, tiny_eos, spec)
        statuses.append(status)
        kinds.append(json.loads((folder / "meta.json").read_text())["graph"])
        exported = load_backend(encoder, tokenizer, tiny_eos, backend)
        _assert_close(
            _encode(exported, tokenizer, texts, False),
            _one_by_one(encoder, tokenizer, texts, False),
        )
    assert statuses == ["exported", "re-exported", "re-exported", "re-exported"]
    # cls: the BERT tower's last layer for [CLS] only (modeling.first_token), same vectors
    assert kinds[0] == kinds[3] == "encoder-cls-pooling-first-token"
    assert kinds[1:3] == ["encoder-mean-pooling", "encoder-last-pooling"]


def _int8_weight_peak(folder: Path) -> int:
    """The largest |value| among the int8 weight initializers of an ONNX export."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(folder / "model.onnx")).graph
    peaks = [
        int(np.abs(numpy_helper.to_array(t).astype(np.int32)).max())
        for t in graph.initializer
        if t.data_type == onnx.TensorProto.INT8
    ]
    assert peaks, "no int8 weights in the export"
    return max(peaks)


def test_onnx_int8_weight_bits_follow_the_cpu_and_an_export_for_the_other_class_is_redone(
    tiny_eos, monkeypatch
):
    """Full 8-bit weights where the CPU has VNNI, 7 bits (reduce_range) without; an export made
    on one CPU class is not reused on the other. Read back from the ONNX initializers: symmetric
    per-channel weights reach 127 on 8 bits and at most 64 on 7."""
    tokenizer = load_tokenizer(tiny_eos)
    encoder = DenseEncoder.from_pretrained(tiny_eos).eval()
    spec = ExportSpec("onnx", "int8")
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: True, raising=False)
    folder, status = ensure_export(encoder, tokenizer, tiny_eos, spec)
    assert status == "exported" and _int8_weight_peak(folder) == 127
    assert "8 bits" in json.loads((folder / "meta.json").read_text())["int8_scheme"]
    assert ensure_export(encoder, tokenizer, tiny_eos, spec) == (folder, "reused")

    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: False, raising=False)
    assert ensure_export(encoder, tokenizer, tiny_eos, spec) == (folder, "re-exported")
    assert _int8_weight_peak(folder) <= 64
    assert "7 bits" in json.loads((folder / "meta.json").read_text())["int8_scheme"]


def test_openvino_int8_float_ops_follow_the_precision_fp32_exports_stay_f32(tiny_eos, monkeypatch):
    """bf16 for the float ops of an NNCF int8 graph only where precision ``auto`` is bf16 (a CPU
    with native bf16; DENSEKIT_PRECISION=fp32 overrides); an fp32 export is always f32. The
    graphs are real exports: the int8 one holds FakeQuantize ops, the fp32 one none."""
    import openvino as ov

    from densekit import precision
    from densekit.inference.backends.openvino_backend import float_precision

    tokenizer = load_tokenizer(tiny_eos)
    encoder = DenseEncoder.from_pretrained(tiny_eos).eval()
    folders = {
        quantize: ensure_export(
            encoder, tokenizer, tiny_eos, ExportSpec("openvino", quantize), None, _scifact(0, 8)
        )[0]
        for quantize in (None, "int8")
    }
    core = ov.Core()
    models = {q: core.read_model(str(folder / "model.xml")) for q, folder in folders.items()}
    kinds = {q: {op.get_type_name() for op in m.get_ops()} for q, m in models.items()}
    assert "FakeQuantize" in kinds["int8"] and "FakeQuantize" not in kinds[None]

    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": (True, "test"))
    monkeypatch.setenv("DENSEKIT_PRECISION", "auto")
    assert float_precision(models["int8"]) == "bf16"
    assert float_precision(models[None]) == "f32"
    monkeypatch.setenv("DENSEKIT_PRECISION", "fp32")
    assert float_precision(models["int8"]) == "f32"
    monkeypatch.setenv("DENSEKIT_PRECISION", "auto")
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": (False, "test"))
    assert float_precision(models["int8"]) == "f32"


def test_foreign_folder_at_the_export_path_is_refused(tiny_eos):
    foreign = Path(tiny_eos) / EXPORT_ROOT / "onnx-fp32"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    encoder = DenseEncoder.from_pretrained(tiny_eos)
    with pytest.raises(ConfigError, match="did not write"):
        load_backend(encoder, load_tokenizer(tiny_eos), tiny_eos, "onnx")
    assert (foreign / "notes.txt").read_text() == "mine"


def test_decoder_only_model_stays_on_torch(tiny_decoder, tmp_path):
    path = _linked_copy(tiny_decoder("llama"), tmp_path / "llama")
    encoder = DenseEncoder.from_pretrained(path, pooling="last")
    with pytest.raises(ConfigError, match=r"decoder-only.*--backend torch"):
        load_backend(encoder, load_tokenizer(path), path, "openvino")
    assert not (Path(path) / EXPORT_ROOT).exists()


@pytest.mark.parametrize(("backend", "module"), [("onnx", "onnxruntime"), ("openvino", "openvino")])
def test_missing_runtime_names_the_extra(tiny_eos, monkeypatch, backend, module):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises
    encoder = DenseEncoder.from_pretrained(tiny_eos)
    with pytest.raises(ConfigError, match=rf"pip install 'densekit\[{backend}\]'"):
        load_backend(encoder, load_tokenizer(tiny_eos), tiny_eos, backend)
    leftovers = list((Path(tiny_eos) / EXPORT_ROOT).glob(f"{backend}-fp32*"))
    assert leftovers == [], leftovers


def test_corpus_sample_is_fixed_and_formatted(tiny_model):
    ids, texts = [str(i) for i in range(50)], [f"x{i}" for i in range(50)]
    table = datasets.Dataset.from_dict({"docid": ids, "title": ["t"] * 50, "text": texts})
    encoder = DenseEncoder.from_pretrained(tiny_model, passage_prefix="P: ")
    first = corpus_sample(encoder, table, False, 5)
    assert first == corpus_sample(encoder, table, False, 5) and len(set(first)) == 5
    assert all(text.startswith("P: t") for text in first)
    assert corpus_sample(encoder, table.select(range(3)), False, 5) == [
        encoder.settings.format_passage(f"x{i}", "t") for i in range(3)
    ]


def test_refused_export_leaves_no_lock_file(tiny_eos, tmp_path):
    user = tmp_path / "user"
    (user / "onnx-fp32").mkdir(parents=True)
    (user / "onnx-fp32" / "notes.txt").write_text("mine")
    encoder = DenseEncoder.from_pretrained(tiny_eos)
    with pytest.raises(ConfigError, match="did not write"):
        load_backend(encoder, load_tokenizer(tiny_eos), tiny_eos, "onnx", export_dir=str(user))
    assert sorted(p.name for p in user.iterdir()) == ["onnx-fp32"]


def test_damaged_cached_export_is_exported_again(tiny_eos):
    tokenizer = load_tokenizer(tiny_eos)
    encoder = DenseEncoder.from_pretrained(tiny_eos).eval()
    folder, _ = ensure_export(encoder, tokenizer, tiny_eos, ExportSpec("onnx"))
    graph = folder / "model.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 3])  # truncated on disk
    exported = load_backend(encoder, tokenizer, tiny_eos, "onnx")
    texts = _scifact(0, 4)
    _assert_close(
        _encode(exported, tokenizer, texts, False), _one_by_one(encoder, tokenizer, texts, False)
    )


class _FakeCompiled:
    """An OpenVINO compiled model's surface: requests that double ``input_ids`` (and record
    the rows each one got), ``streams`` optimal requests."""

    def __init__(self, streams: int) -> None:
        self.streams, self.calls = streams, []

    def get_property(self, name: str) -> int:
        assert name == "OPTIMAL_NUMBER_OF_INFER_REQUESTS"
        return self.streams

    def output(self, index: int) -> str:
        return "out"

    def create_infer_request(self):
        compiled = self

        class Request:
            def infer(self, feeds):
                compiled.calls.append(len(feeds["input_ids"]))
                return {"out": feeds["input_ids"] * 2}

            def start_async(self, feeds):
                self.result = self.infer(feeds)["out"]

            def wait(self):
                pass

            def get_tensor(self, output):
                return types.SimpleNamespace(data=self.result)

        return Request()


@pytest.mark.parametrize(("rows", "latency_calls", "parallel_calls"), [
    (1, [1], []), (2, [], [1, 1]), (7, [], [2, 3, 2]), (64, [], [21, 22, 21]),
])  # fmt: skip
def test_openvino_runner_splits_batches_across_streams_in_order(
    rows, latency_calls, parallel_calls
):
    from densekit.inference.backends.openvino_backend import _runner

    latency, parallel = _FakeCompiled(1), _FakeCompiled(3)
    ids = np.arange(rows * 4).reshape(rows, 4)
    out = _runner(latency, parallel)({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    np.testing.assert_array_equal(out, ids * 2)
    assert latency.calls == latency_calls and parallel.calls == parallel_calls
