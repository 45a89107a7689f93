"""``densekit rerank``: scores equal each pair scored alone; bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

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
            "--save_ranking_to", str(out)]  # fmt: skip
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
