"""The Python searchers against the command lines: ``DenseSearcher`` ranks as ``densekit encode``
+ ``densekit search``, ``BM25Searcher`` as ``densekit bm25``, ``HybridSearcher`` as ``densekit
fuse --method weighted`` over those two runs; ``load_searcher`` opens a recipe's folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import minilm_path

from densekit.commands import main as cli
from densekit.data.readers import load_corpus, load_queries
from densekit.data.runs import read_run
from densekit.encoders import EncoderSpec, load_encoder
from densekit.errors import ConfigError
from densekit.search import (
    BM25Searcher,
    CorpusStore,
    DenseSearcher,
    Hit,
    HybridSearcher,
    Searcher,
    load_searcher,
    load_searchers,
)

SETTINGS = {"passage_max_len": 128}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, scifact_slice) -> dict[str, Path]:
    """The command lines' runs over the slice: dense (depth 10 and 100), BM25 (10 and 100),
    and their weighted fusion (0.3 BM25) at depth 10."""
    out = tmp_path_factory.mktemp("runs")
    model = ["--model_name_or_path", minilm_path(), "--passage_max_len", "128"]
    corpus, queries = scifact_slice / "corpus.jsonl", scifact_slice / "queries.jsonl"
    assert cli(["encode", *model, "--dataset_path", str(corpus),
                "--encode_output_path", str(out / "c")]) == 0  # fmt: skip
    assert cli(["encode", *model, "--dataset_path", str(queries), "--encode_is_query",
                "--encode_output_path", str(out / "q")]) == 0  # fmt: skip
    files = {}
    for depth in (10, 100):
        files[f"dense{depth}"] = out / f"dense{depth}.trec"
        assert cli(["search", "--query_reps", str(out / "q"), "--passage_reps", str(out / "c"),
                    "--depth", str(depth), "--save_ranking_to", str(files[f"dense{depth}"])]) == 0  # fmt: skip
        files[f"bm25{depth}"] = out / f"bm25{depth}.trec"
        assert cli(["bm25", "--corpus", str(corpus), "--queries", str(queries), "--depth",
                    str(depth), "--save_ranking_to", str(files[f"bm25{depth}"])]) == 0  # fmt: skip
    files["hybrid"] = out / "hybrid.trec"
    assert cli(["fuse", "--runs", str(files["bm25100"]), str(files["dense100"]), "--method",
                "weighted", "--weights", "0.3,0.7", "--depth", "10",
                "--save_ranking_to", str(files["hybrid"])]) == 0  # fmt: skip
    files["embeddings"] = out / "c"
    return files


@pytest.fixture(scope="module")
def queries(scifact_slice) -> tuple[list[str], list[str]]:
    table = load_queries(scifact_slice / "queries.jsonl")
    return list(table["query_id"]), list(table["text"])


@pytest.fixture(scope="module")
def searchers(scifact_slice, runs) -> dict:
    corpus = CorpusStore.open(scifact_slice / "corpus.jsonl")
    encoder = load_encoder(EncoderSpec(minilm_path(), overrides=SETTINGS))
    dense = DenseSearcher.from_embeddings(encoder, runs["embeddings"], corpus)
    bm25 = BM25Searcher.from_corpus(corpus)
    return {"dense": dense, "bm25": bm25, "hybrid": HybridSearcher(bm25, dense, 0.3, depth=100)}


def _same_ranking(got: dict[str, list[Hit]], expected: dict[str, dict[str, float]]) -> None:
    """Same documents in the same order; scores equal up to float32 kernels (relative 1e-5:
    queries are encoded in another batch than ``densekit encode`` used)."""
    assert set(got) == set(expected)
    for qid, hits in got.items():
        assert [h.docid for h in hits] == list(expected[qid]), qid
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        want = np.array(list(expected[qid].values()))
        np.testing.assert_allclose([h.score for h in hits], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_batch_search_equals_the_command_lines(searchers, runs, queries, mode):
    qids, texts = queries
    expected = read_run(
        runs["dense10" if mode == "dense" else "bm2510" if mode == "bm25" else "hybrid"]
    )
    _same_ranking(searchers[mode].batch_search(texts, qids, k=10), expected)
    assert isinstance(searchers[mode], Searcher)


def test_search_one_query_equals_its_batch_row(searchers, queries):
    qids, texts = queries
    batch = searchers["hybrid"].batch_search(texts, qids, k=5)
    alone = searchers["hybrid"].search(texts[3], k=5)
    assert [h.docid for h in alone] == [h.docid for h in batch[qids[3]]]


def test_hits_carry_the_documents_text(searchers, scifact_slice, queries):
    table = load_corpus(scifact_slice / "corpus.jsonl")
    by_id = {row["docid"]: row for row in table}
    for hit in searchers["dense"].search(queries[1][0], k=10):
        assert (hit.title, hit.text) == (by_id[hit.docid]["title"], by_id[hit.docid]["text"])


def test_dense_searcher_over_a_saved_index(runs, scifact_slice, queries, tmp_path):
    assert cli(["index", "--passage_reps", str(runs["embeddings"]), "--save_index",
                str(tmp_path / "index")]) == 0  # fmt: skip
    spec = EncoderSpec(minilm_path(), overrides=SETTINGS)
    searcher = DenseSearcher.from_index(
        spec, tmp_path / "index", str(scifact_slice / "corpus.jsonl")
    )
    _same_ranking(searcher.batch_search(queries[1], queries[0], k=10), read_run(runs["dense10"]))


def test_load_searcher_opens_a_searcher_folder(searcher_dir, runs, queries):
    hybrid = load_searcher(searcher_dir)
    assert isinstance(hybrid, HybridSearcher) and hybrid.weight == 0.3
    _same_ranking(hybrid.batch_search(queries[1], queries[0], k=10), read_run(runs["hybrid"]))
    opened = load_searchers(searcher_dir.parent)  # a recipe output holding searcher/
    assert opened.info["corpus_size"] == 100 and opened.info["dimension"] == 384
    assert set(opened.dev_queries) == set(queries[0]) and opened.dev_qrels


def test_unreadable_folders_and_modes_are_one_line(tmp_path, searcher_dir):
    with pytest.raises(ConfigError, match="is not a searcher folder"):
        load_searcher(tmp_path)
    with pytest.raises(ConfigError, match="unknown mode"):
        load_searcher(searcher_dir, mode="sparse")
    with pytest.raises(ConfigError, match=r"weight must lie in \[0, 1\]"):
        HybridSearcher(None, None, weight=1.5)
