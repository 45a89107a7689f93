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


# -- output paths that cannot be written: one line, nothing written, on every writing command --


@pytest.fixture
def inputs(tmp_path, write_jsonl, corpus):
    """Small valid inputs for every command that writes (runs, qrels, queries, vectors, pickle)."""
    import pickle

    from densekit.retrieval.embeddings import save_embeddings

    d = tmp_path / "in"
    d.mkdir()
    queries = write_jsonl(d / "q.jsonl", [{"_id": f"q{i}", "text": f"body {i}"} for i in range(3)])
    (d / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\t1\nq2\td2\t1\n")
    for name, shift in (("a", 0), ("b", 1)):
        lines = [f"q{q} Q0 d{(q + k + shift) % 6} {k + 1} {1.0 - k / 10} {name}\n" for q in range(3) for k in range(4)]  # fmt: skip
        (d / f"{name}.trec").write_text("".join(lines))
    rng = np.random.default_rng(0)
    save_embeddings(d / "docs", [f"d{i}" for i in range(6)], rng.random((6, 4), "float32"), {})
    save_embeddings(d / "qvec", ["q0", "q1", "q2"], rng.random((3, 4), "float32"), {"is_query": True})  # fmt: skip
    with open(d / "vec.pkl", "wb") as handle:
        pickle.dump((rng.random((2, 4), "float32"), ["x", "y"]), handle)
    return {"corpus": corpus, "queries": str(queries), "qrels": str(d / "qrels.tsv"),
            "a": str(d / "a.trec"), "b": str(d / "b.trec"), "docs": str(d / "docs"),
            "qvec": str(d / "qvec"), "pkl": str(d / "vec.pkl"), "dir": d}  # fmt: skip


def _writers(i, out, model, train_data, beir):
    """argv of each writing command with ``out`` as its output."""
    return {
        "bm25": ["bm25", "--corpus", i["corpus"], "--queries", i["queries"], "--save_ranking_to", out],
        "compare": ["compare", i["a"], i["b"], "--qrels", i["qrels"], "--output", out],
        "convert": ["convert", "--input", i["pkl"], "--output", out],
        "encode": ["encode", "--model_name_or_path", model, "--dataset_path", i["corpus"],
                   "--encode_output_path", out],
        "evaluate": ["evaluate", "--run", i["a"], "--qrels", i["qrels"], "--output", out],
        "fuse": ["fuse", "--runs", i["a"], i["b"], "--save_ranking_to", out],
        "index": ["index", "--passage_reps", i["docs"], "--save_index", out],
        "merge-runs": ["merge-runs", "--runs", i["a"], i["b"], "--save_ranking_to", out],
        "mine": ["mine", "--run", i["a"], "--qrels", i["qrels"], "--corpus", i["corpus"],
                 "--queries", i["queries"], "--output", out],
        "recipe": ["recipe", "--data_dir", str(beir), "--output_dir", out, "--model", model],
        "search": ["search", "--query_reps", i["qvec"], "--passage_reps", i["docs"],
                   "--save_ranking_to", out],
        "train": ["train", "--model_name_or_path", model, "--dataset_path", train_data,
                  "--output_dir", out, "--train_group_size", "2", *QUIET],
    }  # fmt: skip


WRITERS = list(_writers({k: "" for k in ("corpus", "queries", "qrels", "a", "b", "docs", "qvec", "pkl")}, "", "", "", ""))  # fmt: skip


def _snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("command", WRITERS)
def test_output_under_a_file_is_one_line(
    command, inputs, tiny_model, tiny_train, beir_folder, tmp_path, capsys
):
    blocker = tmp_path / "taken.txt"
    blocker.write_text("the user's file")
    out = str(blocker / "sub" / "out")
    argv = _writers(inputs, out, tiny_model, tiny_train, beir_folder())[command]
    before = _snapshot(tmp_path)
    assert cli(argv) == 2
    _one_line_error(capsys, str(blocker), "is a file")
    assert blocker.read_text() == "the user's file"
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("command", WRITERS)
def test_output_folder_that_cannot_be_written_is_one_line(
    command, inputs, tiny_model, tiny_train, beir_folder, tmp_path, capsys, monkeypatch
):
    import tempfile

    locked = tmp_path / "locked"
    locked.mkdir()
    argv = _writers(inputs, str(locked / "out"), tiny_model, tiny_train, beir_folder())[command]
    real = tempfile.mkdtemp

    def refuse(*args, dir=None, **kwargs):  # root writes anywhere: refuse as a read-only folder
        if dir is not None and str(dir).startswith(str(locked)):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    before = _snapshot(tmp_path)
    assert cli(argv) == 2
    _one_line_error(capsys, str(locked), "Permission denied")
    assert _snapshot(tmp_path) == before


def test_truncated_weights_are_one_line(tiny_model, corpus, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert _encode(str(broken), corpus, tmp_path / "out") == 2
    _one_line_error(capsys, "broken-model")
    assert not (tmp_path / "out").exists()


def test_overwrite_keeps_a_file_the_user_added(tiny_model, corpus, inputs, tmp_path):
    out = tmp_path / "vectors"
    assert _encode(tiny_model, corpus, out) == 0
    (out / "notes.txt").write_text("my notes")
    assert _encode(tiny_model, corpus, out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "my notes"
    converted = tmp_path / "converted"
    assert cli(["convert", "--input", inputs["pkl"], "--output", str(converted)]) == 0
    (converted / "notes.txt").write_text("my notes")
    argv = ["convert", "--input", inputs["pkl"], "--output", str(converted), "--overwrite"]
    assert cli(argv) == 0
    assert (converted / "notes.txt").read_text() == "my notes"
    assert load_embeddings(converted)[0] == ["x", "y"]


@pytest.mark.parametrize("alpha", ["2", "-1", "0"])
def test_compare_alpha_outside_0_1_is_refused(inputs, capsys, alpha):
    argv = ["compare", inputs["a"], inputs["b"], "--qrels", inputs["qrels"], "--alpha", alpha]
    assert cli(argv) == 2
    _one_line_error(capsys, "--alpha")


def test_compare_says_when_runs_cover_different_queries(inputs, tmp_path, capsys):
    partial = tmp_path / "partial.trec"
    lines = open(inputs["a"]).read().splitlines(keepends=True)  # noqa: SIM115
    partial.write_text("".join(line for line in lines if line.startswith("q0 ")))
    assert cli(["compare", inputs["a"], str(partial), "--qrels", inputs["qrels"]]) == 0
    out = capsys.readouterr().out
    assert "cover different judged queries" in out and "coverage differs: 1 vs 3" in out


@pytest.mark.parametrize(
    ("vectors", "needle"),
    [(np.array([[0.1, np.nan], [0.2, 0.3]], "float32"), "record 1"), (np.zeros((0, 4), "float32"), "no embeddings")],
)  # fmt: skip
def test_convert_refuses_nan_vectors_and_empty_pickles(tmp_path, capsys, vectors, needle):
    import pickle

    source = tmp_path / "vec.pkl"
    with open(source, "wb") as handle:
        pickle.dump((vectors, [f"x{i}" for i in range(len(vectors))]), handle)
    out = tmp_path / "out"
    assert cli(["convert", "--input", str(source), "--output", str(out)]) == 2
    _one_line_error(capsys, "vec.pkl", needle)
    assert not out.exists()


def test_mine_negative_number_zero_is_refused_not_defaulted(inputs, tmp_path, capsys):
    out = tmp_path / "train.jsonl"
    argv = ["mine", "--run", inputs["a"], "--qrels", inputs["qrels"], "--corpus", inputs["corpus"],
            "--queries", inputs["queries"], "--output", str(out), "--negative_number", "0"]  # fmt: skip
    assert cli(argv) == 2
    _one_line_error(capsys, "--negative_number must be positive")
    assert not out.exists()


def test_batch_larger_than_the_data_with_max_steps_does_not_pretend_to_train(
    tiny_model, tiny_train, tmp_path, capsys
):
    flags = ["--per_device_train_batch_size", "32", "--max_steps", "2"]
    assert _train(tiny_model, tiny_train, tmp_path / "run", *flags) == 2
    _one_line_error(capsys, "make 0 full batches")
    assert not (tmp_path / "run").exists()
