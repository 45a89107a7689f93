"""Bad input and unsafe targets, as a new user meets them: each gives exit 2 and one stderr line
naming the problem, before anything is written, and never touches data densekit did not write."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densekit.commands import main as cli
from densekit.retrieval.embeddings import load_embeddings

QUIET = ["--report_to", "none", "--disable_tqdm", "true"]


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("densekit: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def corpus(tmp_path, write_jsonl):
    rows = [{"_id": f"d{i}", "title": f"T{i}", "text": f"body number {i}"} for i in range(6)]
    return str(write_jsonl(tmp_path / "corpus.jsonl", rows))


def _encode(model, corpus, out, *flags):
    return cli(
        ["encode", "--model_name_or_path", model, "--dataset_path", corpus,
         "--encode_output_path", str(out), *flags]
    )  # fmt: skip


def test_encode_accepts_tevatron_eos_pooling(tiny_model, corpus, tmp_path):
    assert _encode(tiny_model, corpus, tmp_path / "eos", "--pooling", "eos") == 0
    assert _encode(tiny_model, corpus, tmp_path / "last", "--pooling", "last") == 0
    eos, last = load_embeddings(tmp_path / "eos")[1], load_embeddings(tmp_path / "last")[1]
    np.testing.assert_array_equal(eos, last)


def test_missing_model_folder_is_named(corpus, tmp_path, capsys):
    assert _encode(str(tmp_path / "no-model"), corpus, tmp_path / "out") == 2
    _one_line_error(capsys, "no-model", "does not exist")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", ["0", "-3"])
def test_encode_batch_size_must_be_positive(tiny_model, corpus, tmp_path, capsys, size):
    assert _encode(tiny_model, corpus, tmp_path / "out", "--batch_size", size) == 2
    _one_line_error(capsys, "--batch_size must be positive")
    assert not (tmp_path / "out").exists()


def test_encode_refuses_a_foreign_folder_and_keeps_it(tiny_model, corpus, tmp_path, capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    assert _encode(tiny_model, corpus, target) == 2
    _one_line_error(capsys, "did not write")
    assert (target / "thesis.tex").read_text() == "years of work"


def test_complete_folder_of_another_source_is_not_skipped(
    tiny_model, corpus, tmp_path, write_jsonl, capsys
):
    out = tmp_path / "vectors"
    assert _encode(tiny_model, corpus, out) == 0
    assert _encode(tiny_model, corpus, out) == 0  # same source and kind: skipped
    assert "skipped" in capsys.readouterr().out
    queries = write_jsonl(tmp_path / "q.jsonl", [{"_id": "q1", "text": "body"}])
    assert _encode(tiny_model, str(queries), out, "--encode_is_query") == 2
    _one_line_error(capsys, "already holds corpus vectors", "--overwrite")
    other = write_jsonl(tmp_path / "other.jsonl", [{"_id": "x", "text": "other"}])
    assert _encode(tiny_model, str(other), out) == 2
    _one_line_error(capsys, "already holds corpus vectors")
    assert _encode(tiny_model, str(other), out, "--overwrite") == 0
    assert load_embeddings(out)[0] == ["x"]


def _train(model, data, out, *flags):
    return cli(
        ["train", "--model_name_or_path", model, "--dataset_path", data, "--output_dir", str(out),
         "--train_group_size", "2", *QUIET, *flags]
    )  # fmt: skip


@pytest.mark.parametrize("size", ["0", "-1"])
def test_train_batch_size_checked_before_anything_is_written(
    tiny_model, tiny_train, tmp_path, capsys, size
):
    assert (
        _train(tiny_model, tiny_train, tmp_path / "run", "--per_device_train_batch_size", size) == 2
    )
    _one_line_error(capsys, "--per_device_train_batch_size must be positive")
    assert not (tmp_path / "run").exists()


def test_batch_larger_than_the_data_does_not_pretend_to_train(
    tiny_model, tiny_train, tmp_path, capsys
):
    assert (
        _train(tiny_model, tiny_train, tmp_path / "run", "--per_device_train_batch_size", "32") == 2
    )
    _one_line_error(capsys, "16 training examples make 0 full batches", "optimizer step")
    assert not (tmp_path / "run").exists()


def test_empty_training_file_is_one_line(tiny_model, tmp_path, capsys):
    empty = tmp_path / "train.jsonl"
    empty.write_text("")
    assert _train(tiny_model, str(empty), tmp_path / "run") == 2
    _one_line_error(capsys, "train.jsonl", "no records")


def test_mine_with_no_judged_query_in_the_run_fails(tmp_path, corpus, capsys):
    run = tmp_path / "run.trec"
    run.write_text("zz Q0 d1 1 1.0 t\nzz Q0 d2 2 0.5 t\n")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\n")
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"_id": "q1", "text": "x"}) + "\n")
    out = tmp_path / "train.jsonl"
    argv = ["mine", "--run", str(run), "--qrels", str(qrels), "--corpus", corpus,
            "--queries", str(queries), "--output", str(out)]  # fmt: skip
    assert cli(argv) == 2
    _one_line_error(capsys, "no query of the run is judged")
    assert not out.exists()


def test_evaluate_paths_that_are_folders_or_missing(tmp_path, capsys):
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1 0 d1 1\n")
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d1 1 1.0 t\n")
    assert cli(["evaluate", "--run", str(tmp_path), "--qrels", str(qrels)]) == 2
    _one_line_error(capsys, "is a folder; expected a file")
    assert cli(["evaluate", "--run", str(tmp_path / "nope.trec"), "--qrels", str(qrels)]) == 2
    _one_line_error(capsys, "nope.trec", "no such file")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "keep.txt").write_text("keep")
    argv = [
        "evaluate",
        "--run",
        str(run),
        "--qrels",
        str(qrels),
        "--output",
        str(tmp_path / "results"),
    ]
    assert cli(argv) == 2
    _one_line_error(capsys, "expected a file path")
    assert (tmp_path / "results" / "keep.txt").read_text() == "keep"
