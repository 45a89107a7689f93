"""Readers: every training/corpus/query layout, and every bad input named by file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from densekit.data.formatting import TextFormat
from densekit.data.readers import load_corpus, load_queries, load_train
from densekit.data.train_dataset import Corpus, TrainDataset
from densekit.errors import DataError


def _passages(column):
    return [[(p["docid"], p["title"], p["text"]) for p in row] for row in column]


# ---------------------------------------------------------------------------- good layouts


def test_tevatron_v1_jsonl(tmp_path, write_jsonl):
    path = write_jsonl(
        tmp_path / "v1.jsonl",
        [
            {
                "query_id": "7",
                "query": "what is a cat",
                "positive_passages": [{"docid": "d1", "title": "Cat", "text": "A small feline."}],
                "negative_passages": [
                    {"docid": "d2", "title": "", "text": "A dog barks."},
                    {"docid": 3, "title": "Car", "text": "Four wheels."},
                ],
            },
            {
                "query_id": 8,
                "query": "what is a dog",
                "positive_passages": [{"docid": "d2", "title": "", "text": "A dog barks."}],
                "negative_passages": [],
            },
        ],
    )
    table = load_train(path)
    assert table["query_id"] == ["7", "8"]
    assert table["query"] == ["what is a cat", "what is a dog"]
    assert _passages(table["pos"]) == [
        [("d1", "Cat", "A small feline.")],
        [("d2", "", "A dog barks.")],
    ]
    assert _passages(table["neg"]) == [
        [("d2", "", "A dog barks."), ("3", "Car", "Four wheels.")],
        [],
    ]
    assert table["pos_scores"] == [[], []]
    assert table["prompt"] == ["", ""]


def test_tevatron_v2_id_form_resolved_against_corpus(tmp_path, write_jsonl):
    corpus_path = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"docid": "a", "title": "Alpha", "text": "first letter"},
            {"docid": "b", "title": "", "text": "second letter"},
            {"docid": "c", "title": "Gamma", "text": "third letter"},
        ],
    )
    train_path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "query_id": "q1",
                "query_text": "letters",
                "positive_document_ids": ["a"],
                "negative_document_ids": ["b", "c"],
            }
        ],
    )
    table = load_train(train_path)
    assert _passages(table["pos"]) == [[("a", None, None)]]
    assert _passages(table["neg"]) == [[("b", None, None), ("c", None, None)]]
    with pytest.raises(DataError, match="corpus_path"):
        TrainDataset(table, group_size=3)
    dataset = TrainDataset(
        table,
        group_size=3,
        corpus=Corpus(load_corpus(corpus_path)),
        text_format=TextFormat(passage_field_separator=" | "),
    )
    item = dataset[0]
    assert item["query"] == "letters"
    assert item["passages"][0] == "Alpha | first letter"
    assert sorted(item["passages"][1:]) == ["Gamma | third letter", "second letter"]


def test_flagembedding_with_scores_and_prompt(tmp_path, write_jsonl):
    path = write_jsonl(
        tmp_path / "flag.jsonl",
        [
            {
                "query": "how tall is everest",
                "pos": ["8849 metres"],
                "neg": ["k2 is 8611 metres", "the alps"],
                "pos_scores": [0.9],
                "neg_scores": [0.5, 1],
                "prompt": "Represent this question: ",
            }
        ],
    )
    table = load_train(path)
    assert table["query"] == ["how tall is everest"]
    assert table["query_id"] == ["flag.jsonl:1"]
    assert table["prompt"] == ["Represent this question: "]
    assert _passages(table["pos"]) == [[(None, "", "8849 metres")]]
    assert [p["text"] for p in table["neg"][0]] == ["k2 is 8611 metres", "the alps"]
    assert table["pos_scores"][0] == pytest.approx([0.9])
    assert table["neg_scores"][0] == pytest.approx([0.5, 1.0])


def test_beir_corpus_and_queries(scifact_dir):
    corpus = load_corpus(scifact_dir / "corpus.jsonl")
    assert len(corpus) == 5183
    first = json.loads((scifact_dir / "corpus.jsonl").open(encoding="utf-8").readline())
    assert corpus[0] == {"docid": first["_id"], "title": first["title"], "text": first["text"]}
    queries = load_queries(scifact_dir / "queries.jsonl")
    assert len(queries) == 809
    assert queries[0] == {
        "query_id": "0",
        "text": "0-dimensional biomaterials lack inductive properties.",
    }


def test_tsv_corpus_and_queries(tmp_path):
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("d1\tTitle one\tBody one\r\nd2\tBody two\n", encoding="utf-8")
    table = load_corpus(corpus)
    assert table["docid"] == ["d1", "d2"]
    assert table["title"] == ["Title one", ""]
    assert table["text"] == ["Body one", "Body two"]
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tfirst query\nq2\tsecond query\n", encoding="utf-8")
    assert load_queries(queries)["text"] == ["first query", "second query"]


def test_folder_of_files_and_max_examples_per_file(tmp_path, write_jsonl):
    folder = tmp_path / "train"
    write_jsonl(
        folder / "b.jsonl",
        [{"query_id": f"b{i}", "query": f"qb{i}", "pos": [f"pb{i}"]} for i in range(5)],
    )
    with gzip.open(folder / "a.jsonl.gz", "wt", encoding="utf-8") as handle:
        for i in range(3):
            handle.write(json.dumps({"query_id": f"a{i}", "query": f"qa{i}", "pos": [f"pa{i}"]}))
            handle.write("\n")
    (folder / "notes.txt").write_text("not data")
    table = load_train(folder)
    assert table["query_id"] == ["a0", "a1", "a2", "b0", "b1", "b2", "b3", "b4"]
    capped = load_train(folder, max_examples_per_file=2)
    assert capped["query_id"] == ["a0", "a1", "b0", "b1"]


def test_edited_file_is_reread(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "t.jsonl", [{"query": "one", "pos": ["p"]}])
    assert load_train(path)["query"] == ["one"]
    write_jsonl(path, [{"query": "two", "pos": ["p"]}, {"query": "three", "pos": ["p"]}])
    assert load_train(path)["query"] == ["two", "three"]


# ---------------------------------------------------------------------------- bad input

_GOOD = {"query_id": "q0", "query": "fine query", "pos": ["fine passage"], "neg": ["other"]}


def _lines_with(bad_line: str) -> str:
    """Two good lines, a blank line, then the bad one on line 4."""
    good = [json.dumps({**_GOOD, "query_id": f"q{i}"}) for i in range(2)]
    return "\n".join([*good, "", bad_line]) + "\n"


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ('{"query": "broken", "pos": ["x"]', "broken JSON"),
        ('["not", "an", "object"]', "not a JSON object"),
        (json.dumps({"query": "no positives here"}), "missing field"),
        (json.dumps({"pos": ["p"]}), "missing field query"),
        (json.dumps({"query": "q", "pos": "a string, not a list"}), "pos must be a list"),
        (json.dumps({"query": "q", "pos": []}), "empty positive list"),
        (json.dumps({"query": "q", "pos": ["p"], "neg": [""]}), "empty neg"),
        (json.dumps({"query": "   ", "pos": ["p"]}), "empty query"),
        (json.dumps({"query": "q", "positive_passages": [{"title": "", "text": ""}]}), "empty"),
        (json.dumps({"query": "q", "pos": ["p"], "neg": [3]}), "strings or objects"),
        (json.dumps({"query": "q", "pos": ["p"], "pos_scores": [1, 2]}), "pos_scores has 2"),
        (
            json.dumps({"query": "q", "pos": ["p"], "neg": ["n1", "n2"], "neg_scores": [1.0]}),
            "neg_scores has 1",
        ),
        (json.dumps({"query": "q", "pos": ["p"], "pos_scores": ["high"]}), "finite numbers"),
        (json.dumps({"query": "q", "pos": ["p"], "pos_grades": [float("nan")]}), "finite numbers"),
        (json.dumps({"query": "q", "pos": ["p", "r"], "pos_grades": [2]}), "pos_grades has 1"),
        (
            json.dumps({"query": "q", "pos": ["p"], "pos_grades": [0]}),
            "pos_grades must be positive",
        ),
        (json.dumps({**_GOOD, "query_id": "q1"}), "duplicate query_id 'q1'"),
        (json.dumps({"query": "q", "pos": ["p"], "prompt": 5}), "prompt must be a string"),
        (
            json.dumps({"query": "q", "positive_passages": [{"title": "t", "text": 7}]}),
            "text in positive_passages must be a string",
        ),
    ],
)
def test_bad_train_line_names_file_and_line(tmp_path, bad_line, problem):
    path = tmp_path / "bad_train.jsonl"
    path.write_text(_lines_with(bad_line), encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_train(path)
    message = str(info.value)
    assert "bad_train.jsonl:4" in message
    assert problem in message
    assert info.value.line == 4


def test_bad_line_in_second_file_of_folder(tmp_path, write_jsonl):
    folder = tmp_path / "folder"
    write_jsonl(folder / "a.jsonl", [_GOOD])
    (folder / "b.jsonl").write_text(json.dumps(_GOOD) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"b\.jsonl:2: broken JSON"):
        load_train(folder)


@pytest.mark.parametrize(
    ("lines", "line", "problem"),
    [
        (['{"_id": "d1", "text": "x"}', '{"_id": "d1", "text": "y"}'], 2, "duplicate document id"),
        (['{"_id": "d1", "text": "x"}', '{"_id": "d2", "title": "", "text": ""}'], 2, "empty text"),
        (['{"_id": "d1", "text": "x"}', '{"text": "no id"}'], 2, "missing field _id"),
        (['{"_id": "d1", "text": "x"}', '{"_id": "d2", "text": "x"'], 2, "broken JSON"),
        (['{"_id": "d1", "title": "", "text": 5}'], 1, "text must be a string"),
        (['{"_id": "d1", "title": "has a title", "text": 5}'], 1, "text must be a string"),
    ],
)
def test_bad_corpus_line(tmp_path, lines, line, problem):
    path = tmp_path / "corpus_bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_corpus(path)
    assert f"corpus_bad.jsonl:{line}" in str(info.value)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("lines", "line", "problem"),
    [
        (['{"_id": "1", "text": "a"}', '{"_id": 1, "text": "b"}'], 2, "duplicate query id '1'"),
        (['{"_id": "1", "text": "a"}', '{"_id": "2", "text": ""}'], 2, "empty query text"),
        (['{"_id": "1"}'], 1, "missing field query text"),
    ],
)
def test_bad_queries_line(tmp_path, lines, line, problem):
    path = tmp_path / "queries_bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_queries(path)
    assert f"queries_bad.jsonl:{line}" in str(info.value)
    assert problem in str(info.value)


def test_missing_path_and_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no data file"):
        load_train(tmp_path / "empty")
    with pytest.raises(DataError, match="tsv is for corpora"):
        (tmp_path / "t.tsv").write_text("a\tb\n")
        load_train(tmp_path / "t.tsv")


def test_unknown_docid_is_a_data_error(tmp_path, write_jsonl):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "alpha"}])
    train = write_jsonl(
        tmp_path / "t.jsonl",
        [{"query": "q", "positive_document_ids": ["zzz"], "negative_document_ids": ["a"]}],
    )
    with pytest.raises(DataError, match=r"'zzz'.* is not in the corpus") as info:
        TrainDataset(load_train(train), 2, corpus=Corpus(load_corpus(corpus), str(corpus)))
    assert "c.jsonl" in str(info.value)


def test_paths_are_reported_as_given(tmp_path):
    path = Path(tmp_path) / "x.jsonl"
    path.write_text("{bad\n")
    with pytest.raises(DataError) as info:
        load_train(str(path))
    assert info.value.path.endswith("x.jsonl")
