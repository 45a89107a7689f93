"""BM25 runs: the lexically matching document must win, and the CLI writes a readable run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densekit.commands.bm25 import main
from densekit.data.readers import load_corpus, load_queries
from densekit.data.runs import read_run
from densekit.errors import DataError
from densekit.retrieval.bm25 import bm25_run

CORPUS = [
    {"_id": "cats", "title": "Cats", "text": "Cats purr and chase mice around the house."},
    {"_id": "dogs", "title": "Dogs", "text": "Dogs bark at the mailman every morning."},
    {"_id": "rust", "title": "", "text": "The Rust borrow checker prevents data races."},
    {"_id": "tea", "title": "Tea", "text": "Green tea is brewed at a lower temperature."},
]
QUERIES = [
    {"_id": "q1", "text": "why do dogs bark"},
    {"_id": "q2", "text": "borrow checker data races"},
    {"_id": "q3", "text": "zebra xylophone"},
]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "corpus": _write_jsonl(tmp_path / "corpus.jsonl", CORPUS),
        "queries": _write_jsonl(tmp_path / "queries.jsonl", QUERIES),
    }


def test_matching_document_wins_and_zero_scores_are_dropped(files: dict[str, Path]) -> None:
    run = bm25_run(load_corpus(files["corpus"]), load_queries(files["queries"]), depth=10)
    assert next(iter(run["q1"])) == "dogs"
    assert next(iter(run["q2"])) == "rust"
    assert list(run["q1"]) == ["dogs"]
    assert run["q3"] == {}
    assert all(score > 0 for hits in run.values() for score in hits.values())


def test_title_is_searched(files: dict[str, Path]) -> None:
    queries = load_queries(_write_jsonl(files["queries"], [{"_id": "t", "text": "tea"}]))
    assert next(iter(bm25_run(load_corpus(files["corpus"]), queries, depth=2)["t"])) == "tea"


def test_cli_restricts_to_qrels_queries(files: dict[str, Path], tmp_path: Path) -> None:
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq2\trust\t1\n")
    out = tmp_path / "bm25.trec"
    argv = [
        "--corpus",
        str(files["corpus"]),
        "--queries",
        str(files["queries"]),
        "--qrels",
        str(qrels),
        "--depth",
        "3",
        "--save_ranking_to",
        str(out),
    ]
    assert main(argv) == 0
    run = read_run(out)
    assert list(run) == ["q2"]
    assert max(run["q2"], key=run["q2"].get) == "rust"


def test_cli_qrels_without_known_queries(files: dict[str, Path], tmp_path: Path) -> None:
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nother\trust\t1\n")
    out = tmp_path / "bm25.trec"
    with pytest.raises(DataError, match="no query id in common"):
        main(
            [
                "--corpus",
                str(files["corpus"]),
                "--queries",
                str(files["queries"]),
                "--qrels",
                str(qrels),
                "--save_ranking_to",
                str(out),
            ]
        )
    assert not out.exists()


def test_ties_at_the_cut_off_are_chosen_by_docid():
    """20 identical passages tie on every query: any depth gives the lowest docids, so a shallow
    ranking is a prefix of a deeper one (the server asks different depths of one query)."""
    import datasets

    from densekit.retrieval.bm25 import BM25Index

    ids = [f"d{i:02d}" for i in range(20)]
    corpus = datasets.Dataset.from_dict(
        {"docid": ids[::-1], "title": [""] * 20, "text": ["kinase signalling"] * 20}
    )
    index = BM25Index.build(corpus)
    for depth in (1, 3, 7, 12):
        assert list(index.search(["kinase"], depth)[0]) == ids[:depth]
