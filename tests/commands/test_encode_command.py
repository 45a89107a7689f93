"""encode -> search -> evaluate end to end, sharding, and encode's bad-input handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import encode_and_search

from densekit.commands import main as cli
from densekit.data.qrels import load_qrels
from densekit.data.runs import read_run
from densekit.evaluation.metrics import evaluate
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.retrieval.embeddings import load_embeddings


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory, scifact_dir) -> Path:
    """60 SciFact docs (the judged ones of 20 queries first), those 20 queries and their qrels."""
    out = tmp_path_factory.mktemp("slice")
    qrels_lines = (scifact_dir / "qrels" / "train.tsv").read_text().splitlines()
    rows = [line.split("\t") for line in qrels_lines[1:] if line.strip()]
    qids = sorted({r[0] for r in rows}, key=int)[:20]
    judged = [r for r in rows if r[0] in qids]
    keep = {r[1] for r in judged}
    docs = [json.loads(line) for line in (scifact_dir / "corpus.jsonl").open()]
    chosen = [d for d in docs if d["_id"] in keep]
    chosen += [d for d in docs if d["_id"] not in keep][: 60 - len(chosen)]
    (out / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in chosen))
    queries = [json.loads(line) for line in (scifact_dir / "queries.jsonl").open()]
    (out / "queries.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in queries if q["_id"] in qids)
    )
    (out / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in judged)
    )
    return out


def _encode(model: str, data: Path, out: Path, *flags: str) -> int:
    return cli(
        [
            "encode",
            "--model_name_or_path",
            model,
            "--dataset_path",
            str(data),
            "--encode_output_path",
            str(out),
            "--batch_size",
            "7",
            *flags,
        ]
    )


def test_encode_matches_the_encoder_text_by_text(tiny_model, slice_dir, tmp_path):
    """Padded batches of 7 against single texts: other matmul shapes, so other CPU kernels; the
    vectors are unit vectors, so an absolute 1e-5 is relative to their norm of 1."""
    assert _encode(tiny_model, slice_dir / "corpus.jsonl", tmp_path / "c", "--normalize") == 0
    ids, vectors = load_embeddings(tmp_path / "c")
    docs = {
        d["_id"]: f"{d['title']} {d['text']}"
        for d in map(json.loads, (slice_dir / "corpus.jsonl").open())
    }
    assert ids == list(docs)
    encoder = DenseEncoder.from_pretrained(tiny_model, normalize=True).eval()
    tokenizer = load_tokenizer(tiny_model)
    with torch.no_grad():
        for row in (0, 17, 59):  # one at a time: no padding, no batching, no sorting
            batch = tokenizer(
                [docs[ids[row]]], truncation=True, max_length=128, return_tensors="pt"
            )
            expected = encoder.encode(dict(batch), is_query=False)[0].numpy()
            np.testing.assert_allclose(vectors[row], expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_encode_search_evaluate_end_to_end(tiny_model, slice_dir, tmp_path):
    """FAISS's inner products against numpy's (each its own BLAS kernel): 1e-5 relative, and
    1e-5 of the largest score near zero (the rounding of a dot product scales with its terms)."""
    run_file = encode_and_search(
        tiny_model,
        slice_dir / "corpus.jsonl",
        slice_dir / "queries.jsonl",
        slice_dir / "qrels.tsv",
        tmp_path,
    )
    run = read_run(run_file)
    qids, qv = load_embeddings(tmp_path / "q")
    dids, dv = load_embeddings(tmp_path / "c")
    scores = qv @ dv.T
    column = {docid: i for i, docid in enumerate(dids)}
    for row, qid in enumerate(qids):  # FAISS and numpy may order near-ties differently
        expected = np.sort(scores[row])[::-1][:10]
        got = sorted(run[qid].values(), reverse=True)
        atol = 1e-5 * max(1.0, float(np.abs(scores[row]).max()))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=atol)
        for docid, score in run[qid].items():
            assert score == pytest.approx(scores[row, column[docid]], rel=1e-5, abs=atol)
    metrics_file = tmp_path / "m.json"
    args = ["evaluate", "--run", str(run_file), "--qrels", str(slice_dir / "qrels.tsv")]
    assert cli([*args, "--metrics", "ndcg@10", "--output", str(metrics_file)]) == 0
    written = json.loads(metrics_file.read_text())["mean"]["ndcg@10"]
    _, mean = evaluate(run, load_qrels(slice_dir / "qrels.tsv"), ["ndcg@10"])
    assert written == pytest.approx(mean["ndcg@10"])


def test_sharded_encode_and_merged_search_equal_unsharded(tiny_model, slice_dir, tmp_path):
    corpus = slice_dir / "corpus.jsonl"
    assert _encode(tiny_model, corpus, tmp_path / "whole") == 0
    for shard in range(3):
        flags = ("--encode_num_shard", "3", "--encode_shard_index", str(shard))
        assert _encode(tiny_model, corpus, tmp_path / "sharded", *flags) == 0
    assert len(list((tmp_path / "sharded").glob("shard-*"))) == 3
    whole_ids, whole = load_embeddings(tmp_path / "whole")
    shard_ids, sharded = load_embeddings(tmp_path / "sharded")
    assert shard_ids == whole_ids
    np.testing.assert_array_equal(sharded, whole)
    _encode(tiny_model, slice_dir / "queries.jsonl", tmp_path / "q", "--encode_is_query")
    runs = []
    for name, extra in (("whole", []), ("sharded", ["--shard_by_shard"])):
        out = tmp_path / f"{name}.trec"
        common = ["--query_reps", str(tmp_path / "q"), "--depth", "20"]
        passage = ["--passage_reps", str(tmp_path / name), "--save_ranking_to", str(out)]
        assert cli(["search", *common, *passage, *extra]) == 0
        runs.append(out.read_text())
    assert runs[0] == runs[1]


def test_torchrun_ranks_take_their_own_shard(tiny_model, slice_dir, tmp_path, monkeypatch):
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert _encode(tiny_model, slice_dir / "corpus.jsonl", tmp_path / "c") == 0
    folders = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert folders == ["shard-00000-of-00002", "shard-00001-of-00002"]
    ids, _ = load_embeddings(tmp_path / "c")
    assert len(ids) == 60


def test_rerun_skips_a_complete_output(tiny_model, slice_dir, tmp_path, capsys):
    assert (
        _encode(tiny_model, slice_dir / "queries.jsonl", tmp_path / "q", "--encode_is_query") == 0
    )
    before = (tmp_path / "q" / "embeddings.npy").stat().st_mtime_ns
    assert (
        _encode(tiny_model, slice_dir / "queries.jsonl", tmp_path / "q", "--encode_is_query") == 0
    )
    assert "skipped" in capsys.readouterr().out
    assert (tmp_path / "q" / "embeddings.npy").stat().st_mtime_ns == before


def test_truncate_dim_and_float16(tiny_model, slice_dir, tmp_path):
    flags = ("--encode_is_query", "--normalize", "--truncate_dim", "8")
    assert (
        _encode(
            tiny_model,
            slice_dir / "queries.jsonl",
            tmp_path / "full",
            "--encode_is_query",
            "--normalize",
        )
        == 0
    )
    assert (
        _encode(
            tiny_model,
            slice_dir / "queries.jsonl",
            tmp_path / "cut",
            *flags,
            "--embedding_dtype",
            "float16",
        )
        == 0
    )
    _, full = load_embeddings(tmp_path / "full")
    _, cut = load_embeddings(tmp_path / "cut")
    assert cut.dtype == np.float16 and cut.shape == (20, 8)
    expected = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    # unit vectors stored in float16 (half an ulp below 1 is 2.4e-4)
    np.testing.assert_allclose(cut.astype(np.float32), expected, atol=2e-3)


def test_bad_inputs_give_one_line_and_no_output(tiny_model, slice_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "1", "text": "fine"}\n{"_id": "2", "text": ""}\n')
    assert _encode(tiny_model, bad, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.jsonl:2" in err and "empty" in err
    assert not (tmp_path / "out").exists()
    assert (
        _encode(
            tiny_model,
            slice_dir / "corpus.jsonl",
            tmp_path / "o",
            "--num_shards",
            "2",
            "--shard_index",
            "2",
        )
        == 2
    )
    if not torch.cuda.is_available():
        assert _encode(tiny_model, slice_dir / "corpus.jsonl", tmp_path / "o", "--fp16") == 2
        assert "GPU" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
