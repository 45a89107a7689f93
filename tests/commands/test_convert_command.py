"""``densekit convert``: Tevatron pickles search to densekit's own run; a malicious pickle is
refused without running; pre-tokenised Tevatron v1 jsonl becomes text with the same tokens."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import encode_and_search, make_beir

from densekit.commands import main as cli
from densekit.data.readers import load_corpus, load_train
from densekit.data.runs import read_run
from densekit.errors import DataError
from densekit.modeling.encoder import load_tokenizer
from densekit.retrieval.embeddings import load_embeddings


def _tevatron_pickle(path: Path, ids: list[str], vectors: np.ndarray) -> Path:
    """What Tevatron's encode driver writes: ``pickle.dump((encoded, lookup_indices), f)``."""
    with open(path, "wb") as handle:
        pickle.dump((np.asarray(vectors), list(ids)), handle)
    return path


def test_converted_pickles_search_to_densekits_own_run(tiny_model, tmp_path):
    beir = make_beir(tmp_path / "beir", dev=False, test=False)
    own = encode_and_search(
        tiny_model, beir / "corpus.jsonl", beir / "queries.jsonl", beir / "qrels" / "train.tsv",
        tmp_path / "own",
    )  # fmt: skip
    doc_ids, docs = load_embeddings(tmp_path / "own" / "c")
    query_ids, queries = load_embeddings(tmp_path / "own" / "q")
    half = len(doc_ids) // 2
    _tevatron_pickle(tmp_path / "corpus.0.pkl", doc_ids[:half], docs[:half])
    _tevatron_pickle(tmp_path / "corpus.1.pkl", doc_ids[half:], docs[half:])
    _tevatron_pickle(tmp_path / "query.pkl", query_ids, queries)
    glob = str(tmp_path / "corpus.*.pkl")
    assert cli(["convert", "--input", glob, "--output", str(tmp_path / "conv-c")]) == 0
    assert cli(["convert", "--input", str(tmp_path / "query.pkl"), "--output", str(tmp_path / "conv-q"), "--encode_is_query"]) == 0  # fmt: skip
    run = tmp_path / "conv.trec"
    search = ["search", "--query_reps", str(tmp_path / "conv-q"), "--passage_reps"]
    assert cli([*search, str(tmp_path / "conv-c"), "--depth", "10", "--save_ranking_to", str(run)]) == 0  # fmt: skip
    assert read_run(run) == read_run(own)


class _RunsAShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


@pytest.mark.parametrize(
    "payload",
    [
        lambda marker: (np.ones((1, 2), np.float32), [_RunsAShellCommand(marker)]),
        lambda marker: _RunsAShellCommand(marker),
        lambda marker: (_CallsEval(), ["d1"]),
        lambda marker: (np.ones((1, 2), np.float32), __import__("collections").OrderedDict()),
    ],
)
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, capsys, payload):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload(marker), protocol=4))
    assert cli(["convert", "--input", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "refused" in err[0]
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        ((np.ones((2, 3), np.float32), ["a"]), "1 ids for 2 embedding rows"),
        ((np.ones(3, np.float32), ["a", "b", "c"]), "2-D float array"),
        ((np.array([["x"]], dtype=object), ["a"]), "2-D float array"),
        (np.ones((2, 3), np.float32), "pair"),
    ],
)
def test_wrong_pickled_objects_are_one_line(tmp_path, capsys, obj, problem):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(obj))
    assert cli(["convert", "--input", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0]


def test_pretokenised_tevatron_v1_files_become_text(tiny_model, tmp_path, capsys, write_jsonl):
    tokenizer = load_tokenizer(tiny_model)

    def ids(text: str) -> list[int]:  # Tevatron v1's preprocessor: no special tokens
        return tokenizer.encode(text, add_special_tokens=False)

    texts = ["the kinase binds ATP.", "Insulin, made in the pancreas!", "tumour growth"]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"text_id": f"d{i}", "text": ids(t)} for i, t in enumerate(texts)])  # fmt: skip
    train = write_jsonl(
        tmp_path / "train.jsonl",
        [{"query": ids("what binds atp"), "positives": [ids(texts[0])], "negatives": [ids(texts[1]), ids(texts[2])]}],
    )  # fmt: skip
    with pytest.raises(DataError, match="densekit convert"):
        load_corpus(corpus)
    for source in (corpus, train):
        out = tmp_path / f"{source.stem}.text.jsonl"
        assert cli(["convert", "--input", str(source), "--tokenizer", tiny_model, "--output", str(out)]) == 0  # fmt: skip
        assert "0 texts tokenize to other ids" in capsys.readouterr().out
    table = load_corpus(tmp_path / "corpus.text.jsonl")
    assert [ids(t) for t in table["text"]] == [ids(t) for t in texts]
    record = load_train(tmp_path / "train.text.jsonl")[0]
    assert ids(record["pos"][0]["text"]) == ids(texts[0])
    assert [ids(p["text"]) for p in record["neg"]] == [ids(texts[1]), ids(texts[2])]
    rows = [json.loads(line) for line in (tmp_path / "train.text.jsonl").open()]
    assert set(rows[0]) == {"query", "pos", "neg"}
