"""read_run/write_run round-trip runs and reject malformed ones with a file:line message."""

from __future__ import annotations

import pytest

from densekit.data.runs import read_run, write_run
from densekit.errors import DataError, DensekitError


def _write(tmp_path, text, name="run.trec"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_trec_run(tmp_path):
    path = _write(tmp_path, "q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 2 -1e-3 tag\n\nq2\tQ0\td1\t1\t7\ttag\r\n")
    assert read_run(path) == {"q1": {"d1": 2.5, "d2": -0.001}, "q2": {"d1": 7.0}}


def test_read_msmarco_run_scores_are_negative_ranks(tmp_path):
    path = _write(tmp_path, "q1\td7\t1\nq1\td3\t2\nq2\td1\t1\n", "run.tsv")
    assert read_run(path) == {"q1": {"d7": -1.0, "d3": -2.0}, "q2": {"d1": -1.0}}


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("q1 Q0 d1 1 2.5\n", 1, "expected 6 columns (TREC"),
        ("q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 1.5\n", 2, "expected 6 columns, found 5"),
        ("q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 high t\n", 2, "score 'high' is not a number"),
        ("q1 Q0 d1 1 nan t\n", 1, "score is NaN"),
        (
            "q1 Q0 d1 1 2.5 t\nq2 Q0 d1 1 2.5 t\nq1 Q0 d1 3 0.5 t\n",
            3,
            "document 'd1' listed twice for query 'q1'",
        ),
        ("q1\td1\t1\nq1\td2\n", 2, "expected 3 columns, found 2"),
        ("q1\td1\t1\nq1\td2\tsecond\n", 2, "rank 'second' is not an integer"),
        ("q1\td1\t1\nq1\td1\t2\n", 2, "listed twice"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, text, line, problem):
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as caught:
        read_run(path)
    assert f"{path}:{line}: " in str(caught.value)
    assert problem in str(caught.value)


def test_empty_run_is_an_error(tmp_path):
    path = _write(tmp_path, "\n")
    with pytest.raises(DataError, match="no results") as caught:
        read_run(path)
    assert str(path) in str(caught.value)


def test_write_trec_sorts_stably_and_round_trips(tmp_path):
    path = tmp_path / "out" / "run.trec"
    run = {"q2": {"a": 0.5, "b": 0.9, "c": 0.5, "d": 0.1 + 0.2}, "q1": {"x": 1}}
    write_run(path, run, tag="mytag")
    assert path.read_text(encoding="utf-8").splitlines() == [
        "q2 Q0 b 1 0.9 mytag",
        "q2 Q0 a 2 0.5 mytag",
        "q2 Q0 c 3 0.5 mytag",
        "q2 Q0 d 4 0.30000000000000004 mytag",
        "q1 Q0 x 1 1.0 mytag",
    ]
    assert read_run(path)["q2"] == {"b": 0.9, "a": 0.5, "c": 0.5, "d": 0.1 + 0.2}


def test_write_msmarco(tmp_path):
    path = tmp_path / "run.tsv"
    write_run(path, {"q1": {"a": 0.1, "b": 0.7}}, fmt="msmarco")
    assert path.read_text(encoding="utf-8") == "q1\tb\t1\nq1\ta\t2\n"
    assert read_run(path) == {"q1": {"b": -1.0, "a": -2.0}}


def test_write_is_atomic_when_it_fails(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("old\n", encoding="utf-8")
    with pytest.raises(DensekitError, match="whitespace"):
        write_run(path, {"q1": {"a": 1.0}, "q2": {"has space": 0.5}})
    assert path.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.trec"]

    fresh = tmp_path / "fresh.trec"
    with pytest.raises(DensekitError):
        write_run(fresh, {"q1": {"a": 1.0}}, fmt="csv")
    with pytest.raises(DensekitError):
        write_run(fresh, {"q1": {"a": 1.0}}, tag="two words")
    assert not fresh.exists()
