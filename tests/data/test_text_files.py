"""Bytes a user's files really contain: a UTF-8 byte-order mark, other encodings, nothing at all,
and paths that are missing or are folders. Each gives the right records or one located error."""

from __future__ import annotations

import gzip

import pytest

from densekit.data.qrels import load_qrels
from densekit.data.readers import load_corpus, load_queries, load_train
from densekit.data.runs import read_run
from densekit.errors import DataError

BOM = "\ufeff"


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_bom_is_stripped_by_every_reader(tmp_path):
    corpus_jsonl = _write(tmp_path / "c.jsonl", BOM + '{"_id": "d1", "text": "x"}\n')
    corpus_tsv = _write(tmp_path / "c.tsv", BOM + "d1\tbody\n")
    queries = _write(tmp_path / "q.jsonl", BOM + '{"_id": "0", "text": "y"}\n')
    train = _write(tmp_path / "t.jsonl", BOM + '{"query": "y", "pos": ["x"]}\n')
    run = _write(tmp_path / "r.trec", BOM + "0 Q0 d1 1 2.5 t\n")
    qrels = _write(tmp_path / "qrels.txt", BOM + "0 0 d1 1\n")
    beir_qrels = _write(tmp_path / "qrels.tsv", BOM + "query-id\tcorpus-id\tscore\n0\td1\t1\n")
    assert load_corpus(corpus_jsonl)["docid"] == ["d1"]
    assert load_corpus(corpus_tsv)["docid"] == ["d1"]
    assert load_queries(queries)["query_id"] == ["0"]
    assert load_train(train)["query"] == ["y"]
    assert read_run(run) == {"0": {"d1": 2.5}}
    assert load_qrels(qrels) == {"0": {"d1": 1}} == load_qrels(beir_qrels)


@pytest.mark.parametrize(
    ("name", "reader"),
    [
        ("c.jsonl", load_corpus),
        ("t.jsonl", load_train),
        ("r.trec", read_run),
        ("q.tsv", load_qrels),
    ],
)
def test_non_utf8_bytes_name_file_and_line(tmp_path, name, reader):
    lines = {
        "c.jsonl": ['{"_id": "1", "text": "ok"}', '{"_id": "2", "text": "caf\u00e9"}'],
        "t.jsonl": ['{"query": "a", "pos": ["b"]}', '{"query": "caf\u00e9", "pos": ["b"]}'],
        "r.trec": ["q Q0 d1 1 1.0 t", "q Q0 caf\u00e9 2 0.5 t"],
        "q.tsv": ["q 0 d1 1", "q 0 caf\u00e9 1"],
    }[name]
    path = _write(tmp_path / name, "\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"not UTF-8 text") as error:
        reader(path)
    assert error.value.path == str(path) and error.value.line == 2


def test_gzipped_non_utf8_is_located_too(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write('{"_id": "1", "text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8") as error:
        load_corpus(path)
    assert error.value.line == 1


@pytest.mark.parametrize("reader", [load_corpus, load_queries, load_train])
def test_empty_file_is_one_error(tmp_path, reader):
    path = _write(tmp_path / "empty.jsonl", "\n\n")
    with pytest.raises(DataError, match="holds no records"):
        reader(path)


@pytest.mark.parametrize("reader", [load_corpus, load_queries, load_train, read_run, load_qrels])
def test_missing_local_path_is_never_sent_to_a_hub(tmp_path, reader):
    with pytest.raises(DataError, match="no such file"):
        reader(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="no such file"):
        reader("./data/not-here.tsv")


@pytest.mark.parametrize("reader", [read_run, load_qrels])
def test_folder_where_a_file_is_expected(tmp_path, reader):
    with pytest.raises(DataError, match="is a folder; expected a file"):
        reader(tmp_path)
