"""``densekit mine`` as FlagEmbedding's hn_mine.py (its README line) and its {query, pos, neg}
output from a run; negatives checked against a ranking computed here with numpy."""

from __future__ import annotations

import json
import shlex

import numpy as np
import torch
from conftest import make_beir, write_jsonl

from densekit.commands import main as cli
from densekit.compat import flags as peer_flags
from densekit.data.runs import write_run
from densekit.modeling.encoder import DenseEncoder, load_tokenizer

TOPICS = ["kinase", "protein", "vaccine", "neuron"]


def _rows() -> list[dict]:
    return [
        {
            "query": f"how does the {TOPICS[i % 4]} work in case {i}",
            "pos": [f"the {TOPICS[i % 4]} works like this in case {i}"],
            "neg": [f"unrelated note {i}", f"{TOPICS[(i + 1) % 4]} trivia {i}"],
            "prompt": "keep me",
        }
        for i in range(12)
    ]


def _vectors(model: str, texts: list[str]) -> np.ndarray:
    """FlagEmbedding's defaults (cls pooling, normalized), one text at a time (no padding)."""
    encoder = DenseEncoder.from_pretrained(model, pooling="cls", normalize=True).eval()
    tokenizer = load_tokenizer(model)
    with torch.no_grad():
        return np.stack(
            [encoder.encode(dict(tokenizer([t], return_tensors="pt")), False)[0].numpy() for t in texts]
        )  # fmt: skip


def test_flagembedding_hn_mine_line(tiny_model, tmp_path, capsys):
    rows = _rows()
    source = write_jsonl(tmp_path / "toy_finetune_data.jsonl", rows)
    out = tmp_path / "toy_finetune_data_minedHN.jsonl"
    peer_flags._SHOWN.clear()
    line = f"--input_file {source} --output_file {out} --range_for_sampling 2-200 --negative_number 15 --use_gpu_for_searching --embedder_name_or_path {tiny_model}"  # fmt: skip
    assert cli(["mine", *shlex.split(line)]) == 0
    notes = [x for x in capsys.readouterr().err.splitlines() if "--use_gpu_for_searching" in x]
    assert len(notes) == 1
    mined = [json.loads(x) for x in out.open()]
    pool = list(dict.fromkeys(t for r in rows for t in r["pos"] + r["neg"]))
    docs = _vectors(tiny_model, pool)
    queries = _vectors(tiny_model, [r["query"] for r in rows])
    for row, got, q in zip(rows, mined, queries, strict=True):
        assert {k: v for k, v in got.items() if k != "neg"} == {
            k: v for k, v in row.items() if k != "neg"
        }
        assert len(got["neg"]) == 15 and len(set(got["neg"])) == 15
        order = [pool[i] for i in np.argsort(-(docs @ q), kind="stable")]
        window = [t for t in order[2:200] if t not in row["pos"] and t != row["query"]]
        assert set(got["neg"]) <= set(window)
        assert not set(got["neg"]) & set(order[:2]) - set(window)


def test_flagembedding_v1_hn_mine_line_mines_the_same(tiny_model, tmp_path):
    """v1's ``baai_general_embedding/finetune/hn_mine.py`` names the model --model_name_or_path."""
    source = write_jsonl(tmp_path / "toy_finetune_data.jsonl", _rows())
    common = f"--input_file {source} --range_for_sampling 2-200 --negative_number 15 --use_gpu_for_searching"  # fmt: skip
    v1, current = tmp_path / "v1.jsonl", tmp_path / "current.jsonl"
    line = f"{common} --output_file {v1} --model_name_or_path {tiny_model}"
    assert cli(["mine", *shlex.split(line)]) == 0
    line = f"{common} --output_file {current} --embedder_name_or_path {tiny_model}"
    assert cli(["mine", *shlex.split(line)]) == 0
    assert v1.read_text() == current.read_text()


def test_flagembedding_model_classes(tiny_model, tmp_path, capsys):
    source = write_jsonl(tmp_path / "rows.jsonl", _rows())
    line = f"--input_file {source} --output_file {tmp_path / 'o.jsonl'} --embedder_name_or_path {tiny_model}"  # fmt: skip
    assert cli(["mine", *shlex.split(line), "--embedder_model_class", "decoder-only-icl"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in-context examples" in err[0]
    assert cli(["mine", *shlex.split(line), "--embedder_model_class", "encoder-only-m3"]) == 0


def test_run_mining_writes_flagembedding_rows(tmp_path):
    beir = make_beir(tmp_path / "beir", dev=False, test=False)
    docs = {d["_id"]: d for d in map(json.loads, (beir / "corpus.jsonl").open())}
    run = {"q0": {"d5": 3.0, "d0": 2.5, "d6": 2.0, "d40": 1.0, "d7": 0.5}}
    write_run(tmp_path / "run.trec", run)
    out = tmp_path / "mined.jsonl"
    argv = [
        "mine",
        "--run",
        str(tmp_path / "run.trec"),
        "--qrels",
        str(beir / "qrels" / "train.tsv"),
    ]
    argv += ["--corpus", str(beir / "corpus.jsonl"), "--queries", str(beir / "queries.jsonl")]
    argv += ["--output", str(out), "--output_format", "flagembedding", "--perc_pos", "0"]
    assert cli([*argv, "--negative_number", "2"]) == 0
    rows = {r["query"]: r for r in map(json.loads, out.open())}
    row = rows["what about kinase 0"]
    text = lambda d: f"{docs[d]['title']} {docs[d]['text']}"  # noqa: E731
    assert set(row) == {"query", "pos", "neg"}
    assert row["pos"] == [text("d0"), text("d40")] and row["neg"] == [text("d5"), text("d6")]
