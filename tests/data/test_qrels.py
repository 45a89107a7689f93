"""load_qrels reads BEIR and TREC qrels and points at the bad line when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from densekit.data.qrels import load_qrels
from densekit.errors import DataError

SCIFACT = Path(__file__).resolve().parents[2] / "src/densekit/bundled_data/scifact/qrels/train.tsv"


def _write(tmp_path, text, name="qrels.tsv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_beir_tsv_with_header_and_crlf(tmp_path):
    path = _write(tmp_path, "query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq1\td2\t0\r\nq2\td1\t2\r\n")
    assert load_qrels(path) == {"q1": {"d1": 1, "d2": 0}, "q2": {"d1": 2}}


def test_trec_qrels_without_header(tmp_path):
    path = _write(tmp_path, "301 0 FBIS3-10082 1\n301 0 FBIS3-10169 0\n\n302\t0\tFT921-1\t-1\n")
    assert load_qrels(path) == {"301": {"FBIS3-10082": 1, "FBIS3-10169": 0}, "302": {"FT921-1": -1}}


def test_reads_scifact_train_qrels():
    qrels = load_qrels(SCIFACT)
    assert qrels["0"] == {"31715818": 1}
    assert all(score == 1 for docs in qrels.values() for score in docs.values())
    assert len(qrels) == 809 and sum(len(d) for d in qrels.values()) == 919


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n", 3, "expected 3 columns, found 2"),
        ("q1 0 d1 1\nq1 0 d2 1 extra\n", 2, "expected 4 columns, found 5"),
        ("q1 d1\n", 1, "expected 3 columns"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\thigh\n", 3, "'high' is not an integer"),
        ("q1 0 d1 1.5\n", 1, "'1.5' is not an integer"),
        (
            "q1 0 d1 1\nq2 0 d1 1\nq1 0 d1 0\n",
            3,
            "duplicate judgment for query 'q1' and document 'd1' (first on line 1)",
        ),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, text, line, problem):
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as caught:
        load_qrels(path)
    assert f"{path}:{line}: " in str(caught.value)
    assert problem in str(caught.value)


@pytest.mark.parametrize("text", ["", "\n\n", "query-id\tcorpus-id\tscore\r\n"])
def test_file_without_judgments_is_an_error(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match="no relevance judgments") as caught:
        load_qrels(path)
    assert str(path) in str(caught.value)
