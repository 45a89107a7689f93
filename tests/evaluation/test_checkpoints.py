"""``densekit evaluate-checkpoints`` scores each checkpoint exactly as encode+search+evaluate."""

from __future__ import annotations

import json

import pytest
from conftest import encode_and_search

from densekit.commands import main as cli
from densekit.commands.train import main as train_main


def test_every_checkpoint_and_the_final_model_are_scored(
    tiny_model, tiny_train, write_jsonl, tmp_path
):
    run_dir = tmp_path / "run"
    flags = [
        "--output_dir", str(run_dir), "--model_name_or_path", tiny_model, "--dataset_path", tiny_train,
        "--train_group_size", "2", "--per_device_train_batch_size", "4", "--max_steps", "4",
        "--save_steps", "2", "--learning_rate", "1e-2", "--pooling", "mean",
    ]  # fmt: skip
    assert train_main(flags) == 0
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"_id": f"d{i}", "text": f"passage about topic {i % 5} answering query {i}"}
            for i in range(16)
        ],
    )
    queries = write_jsonl(
        tmp_path / "queries.jsonl",
        [{"_id": f"q{i}", "text": f"query number {i} about topic {i % 5}"} for i in range(16)],
    )
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(8)))
    common = ["--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels)]
    assert (
        cli(["evaluate-checkpoints", "--output_dir", str(run_dir), *common, "--metrics", "mrr@10"])
        == 0
    )
    scores = json.loads((run_dir / "checkpoints.json").read_text())
    assert list(scores) == ["checkpoint-2", "checkpoint-4", "final"]

    # the same number through the file-based commands for checkpoint-2
    run = encode_and_search(str(run_dir / "checkpoint-2"), corpus, queries, qrels, tmp_path)
    out = tmp_path / "m.json"
    assert (
        cli(
            [
                "evaluate",
                "--run",
                str(run),
                "--qrels",
                str(qrels),
                "--metrics",
                "mrr@10",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert scores["checkpoint-2"]["mrr@10"] == pytest.approx(
        json.loads(out.read_text())["mean"]["mrr@10"]
    )


def test_a_folder_without_checkpoints_is_one_error(tmp_path, capsys):
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\t0\td1\t1\n")
    (tmp_path / "c.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (tmp_path / "q.jsonl").write_text('{"_id": "q1", "text": "y"}\n')
    args = [
        "--corpus",
        str(tmp_path / "c.jsonl"),
        "--queries",
        str(tmp_path / "q.jsonl"),
        "--qrels",
        str(qrels),
    ]
    (tmp_path / "empty").mkdir()
    assert cli(["evaluate-checkpoints", "--output_dir", str(tmp_path / "empty"), *args]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    assert cli(["evaluate-checkpoints", "--output_dir", str(tmp_path / "missing"), *args]) == 2
    assert "is not a folder" in capsys.readouterr().err
