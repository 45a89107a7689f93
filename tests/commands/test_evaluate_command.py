"""`densekit evaluate` prints a table, writes JSON and raises DensekitError on bad input."""

from __future__ import annotations

import json

import pytest

from densekit.commands.evaluate import main
from densekit.errors import DataError, DensekitError


@pytest.fixture
def files(tmp_path):
    run = tmp_path / "run.trec"
    run.write_text(
        "q1 Q0 d1 1 3.0 t\nq1 Q0 d2 2 2.0 t\nq2 Q0 d9 1 1.0 t\nextra Q0 d1 1 1.0 t\n",
        encoding="utf-8",
    )
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\r\nq1\td2\t1\r\nq2\td1\t1\r\n", encoding="utf-8")
    return run, qrels


def test_prints_table_and_writes_json(files, tmp_path, capsys):
    run, qrels = files
    output = tmp_path / "out" / "metrics.json"
    code = main(
        [
            "--run",
            str(run),
            "--qrels",
            str(qrels),
            "--metrics",
            "mrr@10,p@1",
            "--output",
            str(output),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "mrr@10  0.2500" in printed
    assert "p@1     0.0000" in printed
    assert json.loads(output.read_text(encoding="utf-8")) == {
        "mean": {"mrr@10": 0.25, "p@1": 0.0},
        "per_query": {"q1": {"mrr@10": 0.5, "p@1": 0.0}, "q2": {"mrr@10": 0.0, "p@1": 0.0}},
    }


def test_default_metrics_and_per_query(files, capsys):
    run, qrels = files
    assert main(["--run", str(run), "--qrels", str(qrels), "--per_query"]) == 0
    printed = capsys.readouterr().out
    assert "query\tndcg@10\tmrr@10\trecall@100\tmap@100\tp@10\tsuccess@10" in printed
    assert "q1\t0.6309\t0.5000\t1.0000\t0.5000\t0.1000\t1.0000" in printed
    assert "success@10  0.5000" in printed


def test_run_sharing_no_query_with_qrels(files, tmp_path):
    _, qrels = files
    run = tmp_path / "other.trec"
    run.write_text("zz Q0 d1 1 1.0 t\n", encoding="utf-8")
    with pytest.raises(DataError, match="no query of the run is in the qrels") as caught:
        main(["--run", str(run), "--qrels", str(qrels)])
    assert str(run) in str(caught.value)


def test_unknown_metric_and_bad_threshold(files):
    run, qrels = files
    with pytest.raises(DensekitError, match="unknown metric 'bleu@4'"):
        main(["--run", str(run), "--qrels", str(qrels), "--metrics", "ndcg@10,bleu@4"])
    with pytest.raises(DensekitError, match="relevance_threshold"):
        main(["--run", str(run), "--qrels", str(qrels), "--relevance_threshold", "0"])
