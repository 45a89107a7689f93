"""``densekit rerank``: scores equal each pair scored alone; bad input is one line, exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from densekit.commands import run_guarded
from densekit.commands.rerank import main
from densekit.data.runs import read_run
from densekit.modeling.reranker import CrossEncoderReranker, RerankerConfig

DOCS = {
    f"d{i}": (
        f"title {i}",
        f"passage {i} about {['kinase', 'protein', 'vaccine', 'tumor'][i % 4]}" + " word" * i,
    )
    for i in range(8)
}
QUERIES = {"q1": "kinase activity", "q2": "vaccine trial results", "q3": "tumor"}


def write_inputs(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": d, "title": t, "text": x}) + "\n" for d, (t, x) in DOCS.items())
    )
    queries = folder / "queries.jsonl"
    queries.write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items())
    )
    run = folder / "run.trec"
    lines = []
    for n, qid in enumerate(QUERIES):
        docids = [f"d{(n + i) % 8}" for i in range(6)]
        lines += [f"{qid} Q0 {d} {r} {10 - r} bm25" for r, d in enumerate(docids, start=1)]
    run.write_text("\n".join(lines) + "\n")
    return {"corpus": str(corpus), "queries": str(queries), "run": str(run)}


@pytest.fixture(scope="module")
def reranker_dir(tiny_model, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("reranker")
    torch.manual_seed(0)
    CrossEncoderReranker.from_backbone(tiny_model, RerankerConfig(max_len=64)).save_pretrained(
        folder
    )
    return str(folder)


def one_pair_logit(folder: str, query: str, title: str, text: str) -> float:
    """Independent of densekit: the HF model on one unpadded pair."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        batch = tok(query, f"{title} {text}", truncation=True, max_length=64, return_tensors="pt")
        return float(model(**batch).logits[0, 0])


def test_rerank_equals_each_pair_scored_alone(reranker_dir, tmp_path):
    paths = write_inputs(tmp_path)
    out = tmp_path / "reranked.trec"
    argv = ["--model", reranker_dir, "--run", paths["run"], "--corpus", paths["corpus"],
            "--queries", paths["queries"], "--depth", "4", "--batch_size", "3",
            "--save_ranking_to", str(out), "--precision", "fp32"]  # fmt: skip
    assert main(argv) == 0
    first, reranked = read_run(paths["run"]), read_run(out)
    assert set(reranked) == set(QUERIES)
    for qid, hits in reranked.items():
        assert set(hits) == set(list(first[qid])[:4])  # only the top depth, all of it
        for docid, score in hits.items():
            expected = one_pair_logit(reranker_dir, QUERIES[qid], *DOCS[docid])
            assert score == pytest.approx(expected, rel=1e-4, abs=1e-6)
        assert list(hits.values()) == sorted(hits.values(), reverse=True)


def test_msmarco_format(reranker_dir, tmp_path):
    paths = write_inputs(tmp_path)
    out = tmp_path / "reranked.tsv"
    argv = ["--model", reranker_dir, "--run", paths["run"], "--corpus", paths["corpus"],
            "--queries", paths["queries"], "--ranking_format", "msmarco",
            "--save_ranking_to", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert out.read_text().splitlines()[0].split("\t")[2] == "1"


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_run", "no such file"),
        ("unknown_doc", "not in it"),
        ("depth_zero", "--depth must be positive"),
        ("unknown_query", "not in the queries"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    reranker_dir, tmp_path, capsys, case, message
):
    paths = write_inputs(tmp_path / "in")
    depth = "0" if case == "depth_zero" else "5"
    if case == "missing_run":
        paths["run"] = str(tmp_path / "absent.trec")
    if case == "unknown_doc":
        Path(paths["run"]).write_text("q1 Q0 d1 1 2.0 x\nq1 Q0 nope 2 1.0 x\n")
    if case == "unknown_query":
        Path(paths["run"]).write_text("q9 Q0 d1 1 2.0 x\n")
    out = tmp_path / "out" / "reranked.trec"
    argv = ["--model", reranker_dir, "--run", paths["run"], "--corpus", paths["corpus"],
            "--queries", paths["queries"], "--depth", depth, "--save_ranking_to", str(out)]  # fmt: skip
    capsys.readouterr()
    assert run_guarded(main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert message in err[0], err
    assert not out.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---------------------------------------------------------------- --backend onnx / openvino


@pytest.fixture(scope="module")
def minilm_reranker(minilm, tmp_path_factory) -> str:
    """MiniLM's encoder under a seeded random one-label head: real attention patterns, so the
    scores spread and their order means something (a tiny random BERT's logits are ~constant)."""
    folder = tmp_path_factory.mktemp("minilm-reranker")
    torch.manual_seed(0)
    CrossEncoderReranker.from_backbone(minilm, RerankerConfig(max_len=128)).save_pretrained(folder)
    return str(folder)


def _rerank(model: str, inputs: dict[str, str], out: Path, *flags: str) -> dict:
    argv = ["--model", model, "--run", inputs["run"], "--corpus", inputs["corpus"],
            "--queries", inputs["queries"], "--save_ranking_to", str(out), *flags]  # fmt: skip
    assert main(argv) == 0
    return read_run(out)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_fp32_export_scores_equal_torch(minilm_reranker, tmp_path, backend):
    pytest.importorskip("onnxruntime" if backend == "onnx" else "openvino")
    inputs = write_inputs(tmp_path / "in")
    torch_run = _rerank(minilm_reranker, inputs, tmp_path / "torch.trec")
    export = tmp_path / "export"
    flags = ("--backend", backend, "--export_dir", str(export))
    exported = _rerank(minilm_reranker, inputs, tmp_path / "exported.trec", *flags)
    meta = json.loads((export / f"{backend}-fp32" / "meta.json").read_text())
    assert meta["graph"] == "reranker-first-token"  # BERT: the last layer for [CLS] only
    assert not (Path(minilm_reranker) / "densekit_export").exists()
    for qid, hits in torch_run.items():
        assert list(exported[qid]) == list(hits)
        assert list(exported[qid].values()) == pytest.approx(list(hits.values()), rel=1e-4)
    # the cached export is reused (same answer)
    again = _rerank(minilm_reranker, inputs, tmp_path / "again.trec", *flags)
    assert again == exported


def test_int8_export_keeps_the_order(minilm_reranker, tmp_path, scifact_slice):
    """ONNX Runtime dynamic int8 on 40 SciFact passages for 3 queries: Spearman >= 0.9 against
    torch's scores, and most of each query's top 10."""
    pytest.importorskip("onnxruntime")
    from scipy.stats import spearmanr

    from densekit.inference.backends.rerank import load_reranker

    docs = [json.loads(line) for line in (scifact_slice / "corpus.jsonl").open()][:40]
    queries = [json.loads(line)["text"] for line in (scifact_slice / "queries.jsonl").open()][:3]
    passages = [(d["title"], d["text"]) for d in docs]
    torch_model = load_reranker(minilm_reranker)
    int8 = load_reranker(minilm_reranker, "onnx", "int8", export_dir=str(tmp_path))
    assert int8.backend == "onnx-int8"
    for query in queries:
        want = torch_model.score([query] * len(docs), passages, activation=False)
        got = int8.score([query] * len(docs), passages, activation=False)
        assert spearmanr(got, want)[0] >= 0.9
        top = set(np.argsort(-want)[:10].tolist())
        assert len(top & set(np.argsort(-got)[:10].tolist())) >= 8


def test_missing_runtime_is_one_line_naming_the_extra(reranker_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises
    inputs = write_inputs(tmp_path / "in")
    argv = ["--model", reranker_dir, "--run", inputs["run"], "--corpus", inputs["corpus"],
            "--queries", inputs["queries"], "--save_ranking_to", str(tmp_path / "out.trec"),
            "--backend", "onnx", "--export_dir", str(tmp_path / "export")]  # fmt: skip
    assert run_guarded(main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'densekit[onnx]'" in err[0], err
    assert not (tmp_path / "out.trec").exists() and not (tmp_path / "export").exists()


def test_decoder_only_and_lora_rerankers_are_refused(tiny_decoder, tmp_path):
    pytest.importorskip("onnxruntime")
    from densekit.errors import ConfigError
    from densekit.inference.backends.rerank import load_reranker

    decoder = tmp_path / "llama-reranker"
    CrossEncoderReranker.from_backbone(tiny_decoder("llama")).save_pretrained(decoder)
    with pytest.raises(ConfigError, match=r"decoder-only.*reranks with --backend torch"):
        load_reranker(decoder, "onnx")
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="LoRA adapter"):
        load_reranker(lora, "onnx")
    assert not (decoder / "densekit_export").exists()


def test_quantize_without_an_export_backend_is_refused(reranker_dir, tmp_path, capsys):
    inputs = write_inputs(tmp_path / "in")
    argv = ["--model", reranker_dir, "--run", inputs["run"], "--corpus", inputs["corpus"],
            "--queries", inputs["queries"], "--save_ranking_to", str(tmp_path / "out.trec"),
            "--quantize", "int8"]  # fmt: skip
    assert run_guarded(main, argv) == 2
    assert "needs --backend onnx or openvino" in capsys.readouterr().err


def test_bf16_scores_are_the_fp32_scores_to_bf16_precision(reranker_dir, tmp_path):
    """``--precision bf16`` scores under bf16 autocast: close to the fp32 logits (bf16 keeps 8
    bits of mantissa, relative to the logits' scale) but not bit-equal, so autocast ran."""
    paths = write_inputs(tmp_path)
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.trec"
        argv = ["--model", reranker_dir, "--run", paths["run"], "--corpus", paths["corpus"],
                "--queries", paths["queries"], "--depth", "4", "--save_ranking_to", str(out),
                "--precision", precision]  # fmt: skip
        assert main(argv) == 0
        runs[precision] = read_run(out)
    fp32 = np.array([s for q in sorted(runs["fp32"]) for _, s in sorted(runs["fp32"][q].items())])
    bf16 = np.array([s for q in sorted(runs["bf16"]) for _, s in sorted(runs["bf16"][q].items())])
    scale = np.abs(fp32).max()
    assert np.abs(bf16 - fp32).max() <= 0.05 * scale
    assert not np.array_equal(bf16, fp32)
