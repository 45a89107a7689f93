"""Hard-negative mining on a hand-made run where every expected drop is known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densekit.commands.mine import main
from densekit.data.readers import load_train
from densekit.data.runs import write_run
from densekit.errors import ConfigError, DataError
from densekit.retrieval.mine import MineReport, mine_negatives

RUN = {
    "q1": {"a": 10.0, "p1": 9.0, "b": 8.9, "c": 8.5, "d": 8.0, "e": 5.0, "f": 4.0},
    "q2": {"x": 3.0, "y": 2.0, "z": 1.0},
    "q3": {"a": 1.0},
}
QRELS = {
    "q1": {"p1": 1, "n0": 0},
    "q2": {"p2": 2},
    "q3": {"a": 0},
    "q4": {"p1": 1},
}


def test_filters_and_report_counts() -> None:
    negatives, report = mine_negatives(RUN, QRELS, range_max=6, negative_number=2)
    # q1: window a p1 b c d e; p1 is positive; 0.95 * 9.0 = 8.55 drops a (10) and b (8.9).
    assert negatives == {"q1": ["c", "d"], "q2": ["x", "y"], "q4": []}
    assert report == MineReport(
        queries=3,
        candidates_considered=6 + 3,
        removed_as_positive=1,
        removed_by_perc_pos=2,
        queries_without_scored_positive=2,
        queries_missing_from_run=1,
        queries_short_of_negatives=1,
    )


def test_perc_pos_disabled_keeps_close_candidates() -> None:
    negatives, report = mine_negatives(RUN, QRELS, perc_pos=None, negative_number=3)
    assert negatives["q1"] == ["a", "b", "c"]
    assert report.removed_by_perc_pos == 0


def test_rank_window_is_respected() -> None:
    negatives, _ = mine_negatives(RUN, QRELS, range_min=3, range_max=6, perc_pos=None)
    assert negatives["q1"] == ["c", "d", "e"]
    assert negatives["q2"] == []


def test_random_sample_is_seeded_and_never_positive() -> None:
    run = {"q": {f"d{i}": 100.0 - i for i in range(50)} | {"pos": 50.5}}
    qrels = {"q": {"pos": 1, "d3": 1}}
    kwargs = {"perc_pos": None, "negative_number": 10, "sample": "random"}
    first, _ = mine_negatives(run, qrels, **kwargs)
    again, _ = mine_negatives(run, qrels, **kwargs)
    other, _ = mine_negatives(run, qrels, **kwargs, seed=7)
    assert first == again and first != other
    assert len(first["q"]) == 10 and not {"pos", "d3"} & set(first["q"])
    ranks = [int(docid[1:]) for docid in first["q"]]
    assert ranks == sorted(ranks)


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        mine_negatives(RUN, QRELS, range_min=5, range_max=5)
    with pytest.raises(ConfigError):
        mine_negatives(RUN, QRELS, sample="best")


def _write(tmp_path: Path, corpus_ids: list[str], query_ids: list[str]) -> list[str]:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": d, "title": f"T {d}", "text": f"text {d}"}) + "\n"
            for d in corpus_ids
        )
    )
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "".join(json.dumps({"_id": q, "text": f"query {q}"}) + "\n" for q in query_ids)
    )
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{q}\t{d}\t{r}\n" for q, docs in QRELS.items() for d, r in docs.items())
    )
    run = tmp_path / "run.trec"
    write_run(run, RUN)
    return [
        "--run",
        str(run),
        "--qrels",
        str(qrels),
        "--corpus",
        str(corpus),
        "--queries",
        str(queries),
        "--output",
        str(tmp_path / "train.jsonl"),
    ]


ALL_DOCS = ["a", "b", "c", "d", "e", "f", "n0", "p1", "p2", "x", "y", "z"]


def test_cli_writes_tevatron_training_data(tmp_path: Path, capsys) -> None:
    argv = _write(tmp_path, ALL_DOCS, ["q1", "q2", "q3", "q4"])
    assert main([*argv, "--negative_number", "2", "--range_max", "6"]) == 0
    train = load_train(tmp_path / "train.jsonl")
    rows = {row["query_id"]: row for row in train}
    assert set(rows) == {"q1", "q2", "q4"}
    assert rows["q1"]["query"] == "query q1"
    assert [p["docid"] for p in rows["q1"]["pos"]] == ["p1"]
    assert [n["docid"] for n in rows["q1"]["neg"]] == ["c", "d"]
    assert rows["q1"]["neg"][0]["title"] == "T c" and rows["q1"]["neg"][0]["text"] == "text c"
    assert rows["q4"]["neg"] == []
    report = json.loads((tmp_path / "train.jsonl.report.json").read_text())
    assert report["removed_by_perc_pos"] == 2 and report["queries"] == 3
    assert "removed_by_perc_pos: 2" in capsys.readouterr().out.splitlines()


def test_cli_perc_pos_zero_disables_filter(tmp_path: Path) -> None:
    argv = _write(tmp_path, ALL_DOCS, ["q1", "q2", "q3", "q4"])
    main([*argv, "--negative_number", "2", "--perc_pos", "0"])
    first = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert [n["docid"] for n in first["negative_passages"]] == ["a", "b"]


def test_cli_unknown_query_names_the_qrels_file(tmp_path: Path) -> None:
    argv = _write(tmp_path, ALL_DOCS, ["q1", "q2", "q3"])
    with pytest.raises(DataError, match=r"qrels\.tsv: 1 ids not found in queries .*'q4'"):
        main(argv)
    assert not (tmp_path / "train.jsonl").exists()


def test_cli_unknown_documents(tmp_path: Path) -> None:
    argv = _write(tmp_path, [d for d in ALL_DOCS if d != "p2"], ["q1", "q2", "q3", "q4"])
    with pytest.raises(DataError, match=r"qrels\.tsv: 1 ids not found in corpus .*'p2'"):
        main(argv)
    argv = _write(tmp_path, [d for d in ALL_DOCS if d != "x"], ["q1", "q2", "q3", "q4"])
    with pytest.raises(DataError, match=r"run\.trec: 1 ids not found in corpus .*'x'"):
        main(argv)
    assert not (tmp_path / "train.jsonl").exists()


def test_window_moves_down_by_the_count_of_judged_positives() -> None:
    """``shift_by_positives``: a query with k judged positives is mined from rank max(min, k),
    window width unchanged; a query with fewer positives than ``range_min`` is not moved."""
    run = {
        "many": {f"d{i}": 100.0 - i for i in range(20)},
        "one": {f"d{i}": 50.0 - i for i in range(20)},
    }
    qrels = {"many": {f"p{j}": 2 for j in range(5)} | {"d0": 1}, "one": {"d1": 1}}
    kwargs = {"range_min": 2, "range_max": 5, "perc_pos": None, "negative_number": 10}
    shifted, _ = mine_negatives(run, qrels, shift_by_positives=True, **kwargs)
    assert shifted["many"] == ["d6", "d7", "d8"]  # 6 judged positives: ranks 6, 7, 8
    assert shifted["one"] == ["d2", "d3", "d4"]  # 1 positive < range_min: ranks 2, 3, 4
    plain, _ = mine_negatives(run, qrels, **kwargs)
    assert plain["many"] == ["d2", "d3", "d4"]


def test_cli_writes_grades_only_for_queries_with_graded_positives(tmp_path: Path) -> None:
    """Graded qrels: a query whose positives differ in grade gets ``pos_grades`` in the order of
    its positives (read back by the loader); one with equal grades gets none."""
    argv = _write(tmp_path, ALL_DOCS, ["q1", "q2", "q3", "q4"])
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\tp1\t1\nq1\ta\t3\nq1\tz\t0\nq2\tp2\t2\nq2\tx\t2\n")
    assert main([*argv, "--negative_number", "2", "--range_max", "7", "--perc_pos", "0"]) == 0
    rows = {row["query_id"]: row for row in load_train(tmp_path / "train.jsonl")}
    assert [p["docid"] for p in rows["q1"]["pos"]] == ["a", "p1"]
    assert rows["q1"]["pos_grades"] == [3.0, 1.0]
    assert rows["q2"]["pos_grades"] == []
    lines = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert [("pos_grades" in line) for line in lines] == [True, False]
