"""Tevatron's search line over the pickles its encode driver wrote runs unchanged: the pickles
are read by the restricted reader (a malicious one is refused and nothing of it runs)."""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest

from densekit.commands import main as cli
from densekit.compat.tevatron_pickle import load_reps
from densekit.data.runs import read_run


def _dump(path: Path, obj) -> Path:
    """What Tevatron's encode driver writes: ``pickle.dump((encoded, lookup_indices), f)``."""
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)
    return path


@pytest.fixture
def pickles(tmp_path):
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((40, 8)).astype(np.float32)
    queries = rng.standard_normal((5, 8)).astype(np.float32)
    doc_ids = [f"d{i}" for i in range(40)]
    _dump(tmp_path / "query_emb.pkl", (queries, [f"q{i}" for i in range(5)]))
    _dump(tmp_path / "corpus_emb.0.pkl", (docs[:25], doc_ids[:25]))
    _dump(tmp_path / "corpus_emb.1.pkl", (docs[25:], doc_ids[25:]))
    scores = queries @ docs.T
    expected = {
        f"q{q}": [doc_ids[i] for i in np.argsort(-scores[q], kind="stable")[:10]] for q in range(5)
    }
    return tmp_path, expected


@pytest.mark.parametrize("extra", ["", "--shard_search"], ids=["one-index", "shard-search"])
def test_tevatron_search_line_over_pickles(pickles, extra):
    folder, expected = pickles
    line = (
        f"--query_reps {folder}/query_emb.pkl --passage_reps '{folder}/corpus_emb.*.pkl' "
        f"--depth 10 --batch_size -1 --save_text --save_ranking_to {folder}/rank.txt {extra}"
    )
    assert cli(["search", *shlex.split(line)]) == 0
    run = read_run(folder / "rank.txt")
    assert {q: sorted(h, key=lambda d: -h[d]) for q, h in run.items()} == expected


def test_pickles_and_their_conversion_search_alike(pickles):
    folder, _ = pickles
    glob = str(folder / "corpus_emb.*.pkl")
    assert cli(["convert", "--input", glob, "--output", str(folder / "conv")]) == 0
    from_pickles, from_folders = load_reps(glob), load_reps(folder / "conv")
    assert from_pickles[0] == from_folders[0]
    np.testing.assert_array_equal(from_pickles[1], from_folders[1])


class _RunsAShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("which", ["query", "passage"])
def test_search_refuses_a_malicious_pickle_and_nothing_runs(pickles, capsys, which):
    folder, _ = pickles
    marker = folder / "executed"
    evil = _dump(folder / "evil.pkl", (np.ones((1, 8), np.float32), [_RunsAShellCommand(marker)]))
    query = evil if which == "query" else folder / "query_emb.pkl"
    passages = evil if which == "passage" else folder / "corpus_emb.0.pkl"
    argv = ["search", "--query_reps", str(query), "--passage_reps", str(passages)]
    assert cli([*argv, "--save_ranking_to", str(folder / "r.trec")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "evil.pkl" in err[0] and "refused" in err[0]
    assert not marker.exists() and not (folder / "r.trec").exists()


def test_a_docid_in_two_pickled_shards_is_one_line(pickles, capsys):
    folder, _ = pickles
    _dump(folder / "corpus_emb.2.pkl", (np.ones((1, 8), np.float32), ["d3"]))
    argv = ["search", "--query_reps", str(folder / "query_emb.pkl"), "--passage_reps"]
    argv += [str(folder / "corpus_emb.*.pkl"), "--save_ranking_to", str(folder / "r.trec")]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "duplicate id 'd3'" in err[0]
