"""`densekit fuse` end to end: TREC and MS MARCO inputs mixed, tuning JSON, and bad input as
exit 2 with one stderr line and nothing written."""

from __future__ import annotations

import json

import pytest

from densekit.commands import main as cli
from densekit.data.runs import read_run


@pytest.fixture
def runs(tmp_path):
    """A TREC run (q1, q2) and an MS MARCO run (q1, q3): each lacks one query."""
    trec = tmp_path / "bm25.trec"
    trec.write_text(
        "q1 Q0 d1 1 3.0 bm25\nq1 Q0 d2 2 2.0 bm25\nq1 Q0 d3 3 2.0 bm25\nq1 Q0 d4 4 1.0 bm25\n"
        "q2 Q0 x1 1 5.0 bm25\nq2 Q0 x2 2 1.0 bm25\n",
        encoding="utf-8",
    )
    marco = tmp_path / "dense.tsv"  # MS MARCO scores are -rank: d3 -1, d5 -2, d1 -3
    marco.write_text("q1\td3\t1\nq1\td5\t2\nq1\td1\t3\nq3\ty1\t1\nq3\ty2\t2\n", encoding="utf-8")
    return str(trec), str(marco)


def _fuse(runs, out, *flags):
    return cli(["fuse", "--runs", *runs, "--save_ranking_to", str(out), *flags])


def test_rrf_mixed_formats_writes_trec_and_reports_missing_queries(runs, tmp_path, capsys):
    out = tmp_path / "fused.trec"
    assert _fuse(runs, out) == 0
    printed = capsys.readouterr().out
    assert f"{runs[0]}: lacked 1 of 3 fused queries" in printed
    assert f"{runs[1]}: lacked 1 of 3 fused queries" in printed
    lines = out.read_text(encoding="utf-8").splitlines()
    # d1 and d3 tie at 1/61 + 1/63, d2 and d5 at 1/62: ranks follow docid ascending
    assert [line.split()[2] for line in lines[:5]] == ["d1", "d3", "d2", "d5", "d4"]
    assert [line.split()[3] for line in lines[:5]] == ["1", "2", "3", "4", "5"]
    assert all(line.split()[5] == "fused" for line in lines)
    fused = read_run(out)
    assert list(fused) == ["q1", "q2", "q3"]
    assert fused["q1"]["d4"] == pytest.approx(1 / 64)


def test_weighted_msmarco_output_with_depth_and_tag(runs, tmp_path):
    out = tmp_path / "fused.tsv"
    flags = ["--method", "weighted", "--weights", "0.25,0.75", "--depth", "3"]
    assert _fuse(runs, out, *flags, "--ranking_format", "msmarco") == 0
    # minmax: A d1 1, d2 .5, d3 .5, d4 0; B (from -rank) d3 1, d5 .5, d1 0
    # -> d3 .875, d5 .375, d1 .25 (then d2 .125 and d4 0, cut by --depth 3)
    assert out.read_text(encoding="utf-8").splitlines()[:4] == [
        "q1\td3\t1", "q1\td5\t2", "q1\td1\t3", "q2\tx1\t1",
    ]  # fmt: skip


def test_tuning_writes_json_and_uses_the_tuned_weights(runs, tmp_path, capsys):
    qrels = tmp_path / "dev.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td5\t1\n", encoding="utf-8")
    out, tuning = tmp_path / "fused.trec", tmp_path / "tuning.json"
    flags = ["--method", "weighted", "--tune_on", str(qrels), "--metric", "p@1"]
    assert _fuse(runs, out, *flags, "--grid_step", "0.25", "--tuning_output", str(tuning)) == 0
    # d3 (A .5, B 1) beats d5 (A's floor 0, B .5) at every mix: p@1 is 0 at every grid
    # point, and the tie keeps the first point.
    result = json.loads(tuning.read_text(encoding="utf-8"))
    assert result["runs"] == list(runs)
    assert result["metric"] == "p@1" and result["normalize"] == "minmax"
    assert result["grid_step"] == 0.25
    assert [p["weights"] for p in result["grid"]] == [
        [0.0, 1.0], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1.0, 0.0],
    ]  # fmt: skip
    assert result["best"] == {"weights": [0.0, 1.0], "value": 0.0}
    assert "tuned weights 0,1: p@1 0.0000" in capsys.readouterr().out
    # weights (0, 1): B's order, then A-only documents at B's floor 0, ties by docid
    assert list(read_run(out)["q1"]) == ["d3", "d5", "d1", "d2", "d4"]


def test_tuning_picks_the_best_mix_for_the_output(runs, tmp_path):
    qrels = tmp_path / "dev.tsv"
    qrels.write_text("q1 0 d1 1\n", encoding="utf-8")  # TREC qrels; d1 wins when A dominates
    out, tuning = tmp_path / "fused.trec", tmp_path / "tuning.json"
    flags = ["--method", "weighted", "--tune_on", str(qrels), "--metric", "p@1"]
    assert _fuse(runs, out, *flags, "--grid_step", "0.5", "--tuning_output", str(tuning)) == 0
    result = json.loads(tuning.read_text(encoding="utf-8"))
    assert [p["value"] for p in result["grid"]] == [0.0, 0.0, 1.0]
    assert result["best"] == {"weights": [1.0, 0.0], "value": 1.0}
    assert next(iter(read_run(out)["q1"])) == "d1"


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("densekit: error:"), err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--method", "combsum"], "unknown fusion method 'combsum'"),
        (["--method", "weighted", "--normalize", "l2"], "unknown normalisation 'l2'"),
        (["--method", "weighted", "--weights", "1"], "1 weights given for 2 runs"),
        (["--method", "weighted", "--weights", "0.5,-0.5"], "must not be negative"),
        (["--method", "weighted", "--weights", "0,0"], "all zero"),
        (["--method", "weighted", "--weights", "a,b"], "comma-separated numbers"),
        (["--weights", "0.5,0.5"], "rrf has none"),
        (["--tune_on", "dev.tsv"], "--tune_on tunes the weights of --method weighted"),
        (["--method", "weighted", "--tuning_output", "t.json"], "--tuning_output needs --tune_on"),
        (["--depth", "0"], "--depth must be positive"),
        (["--rrf_k", "-1"], "k must be"),
    ],
)
def test_bad_flags_are_one_line_and_write_nothing(runs, tmp_path, capsys, flags, needle):
    out = tmp_path / "fused.trec"
    assert _fuse(runs, out, *flags) == 2
    _one_line_error(capsys, needle)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bm25.trec", "dense.tsv"]


def test_one_run_is_refused(runs, tmp_path, capsys):
    assert _fuse(runs[:1], tmp_path / "fused.trec") == 2
    _one_line_error(capsys, "at least two runs")


def test_unparsable_run_names_file_and_line(runs, tmp_path, capsys):
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d1 1 high tag\n", encoding="utf-8")
    out = tmp_path / "fused.trec"
    assert _fuse([runs[0], str(bad)], out) == 2
    _one_line_error(capsys, "bad.trec:1", "'high' is not a number")
    assert not out.exists()


def test_unjudged_tuning_set_writes_nothing(runs, tmp_path, capsys):
    qrels = tmp_path / "dev.tsv"
    qrels.write_text("other 0 d1 1\n", encoding="utf-8")
    out, tuning = tmp_path / "fused.trec", tmp_path / "tuning.json"
    flags = ["--method", "weighted", "--tune_on", str(qrels), "--tuning_output", str(tuning)]
    assert _fuse(runs, out, *flags) == 2
    _one_line_error(capsys, "no query of the runs is judged")
    assert not out.exists() and not tuning.exists()


def test_folder_as_output_is_refused_before_reading(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    missing = [str(tmp_path / "a.trec"), str(tmp_path / "b.trec")]
    assert _fuse(missing, tmp_path / "out") == 2
    _one_line_error(capsys, "is a folder; expected a file path")
