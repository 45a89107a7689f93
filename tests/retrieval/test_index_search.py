"""FAISS indexes and dense search: exactness against numpy, sharding, saved indexes, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from densekit.commands.search import main
from densekit.data.runs import read_run
from densekit.errors import ConfigError, DataError, DensekitError
from densekit.retrieval.embeddings import save_embeddings
from densekit.retrieval.index import build_index, load_index, save_index, search
from densekit.retrieval.search import search_index, search_shards

DIM = 16


def _vectors(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)


@pytest.fixture
def data(tmp_path: Path) -> dict:
    """300 passages in 3 uneven shards and 25 queries (enough for FAISS's BLAS path)."""
    passages = _vectors(300, seed=1)
    doc_ids = [f"d{i}" for i in range(300)]
    for number, (start, stop) in enumerate([(0, 70), (70, 250), (250, 300)]):
        save_embeddings(
            tmp_path / "corpus" / f"shard-{number}", doc_ids[start:stop], passages[start:stop], {}
        )
    queries = _vectors(25, seed=2)
    query_ids = [f"q{i}" for i in range(25)]
    save_embeddings(tmp_path / "queries", query_ids, queries, {})
    return {
        "dir": tmp_path,
        "passages": passages,
        "doc_ids": doc_ids,
        "queries": queries,
        "query_ids": query_ids,
    }


def test_flat_equals_numpy_brute_force(data: dict) -> None:
    """FAISS's flat inner products against numpy's matmul (each its own BLAS kernel): 1e-5
    relatively, and 1e-5 of the largest score for any score near zero."""
    scores, rows = search(build_index(data["passages"]), data["queries"], depth=10, batch_size=7)
    expected = data["queries"] @ data["passages"].T
    top = np.argsort(-expected, axis=1)[:, :10]
    np.testing.assert_array_equal(rows, top)
    atol = 1e-5 * max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(
        scores, np.take_along_axis(expected, top, axis=1), rtol=1e-5, atol=atol
    )


def test_float16_queries_are_accepted(data: dict) -> None:
    index = build_index(data["passages"])
    _, rows16 = search(index, data["queries"].astype(np.float16), depth=1, batch_size=8)
    _, rows32 = search(index, data["queries"], depth=1, batch_size=8)
    assert (rows16 == rows32).mean() > 0.9


def test_depth_beyond_corpus_size(data: dict) -> None:
    scores, rows = search(build_index(data["passages"][:5]), data["queries"], 50, 128)
    assert rows.shape == (25, 5)
    assert np.isfinite(scores).all()


def test_shard_by_shard_equals_one_index_exactly(data: dict) -> None:
    shards = sorted((data["dir"] / "corpus").iterdir())
    merged = search_shards(data["query_ids"], data["queries"], shards, depth=20)
    whole = search_index(
        data["query_ids"], data["queries"], build_index(data["passages"]), data["doc_ids"], 20
    )
    assert merged == whole
    assert all(len(hits) == 20 for hits in merged.values())


def test_merge_breaks_ties_by_docid(tmp_path: Path) -> None:
    passages = np.ones((4, DIM), dtype=np.float32)
    save_embeddings(tmp_path / "enc" / "shard-0", ["c", "a"], passages[:2], {})
    save_embeddings(tmp_path / "enc" / "shard-1", ["d", "b"], passages[2:], {})
    shards = sorted((tmp_path / "enc").iterdir())
    run = search_shards(["q"], np.ones((1, DIM), dtype=np.float32), shards, depth=3)
    assert list(run["q"]) == ["a", "b", "c"]


def test_cli_sharded_and_unsharded_write_the_same_run(data: dict) -> None:
    d = data["dir"]
    common = ["--query_reps", str(d / "queries"), "--passage_reps", str(d / "corpus")]
    assert main([*common, "--depth", "15", "--save_ranking_to", str(d / "a.trec")]) == 0
    assert (
        main([*common, "--depth", "15", "--save_ranking_to", str(d / "b.trec"), "--shard_by_shard"])
        == 0
    )
    assert (d / "a.trec").read_text() == (d / "b.trec").read_text()
    run = read_run(d / "a.trec")
    assert set(run) == set(data["query_ids"])
    assert all(len(docs) == 15 for docs in run.values())


def test_cli_glob_and_msmarco_format(data: dict) -> None:
    d = data["dir"]
    argv = [
        "--query_reps",
        str(d / "queries"),
        "--passage_reps",
        str(d / "corpus" / "shard-*"),
        "--depth",
        "3",
        "--save_ranking_to",
        str(d / "run.tsv"),
        "--ranking_format",
        "msmarco",
    ]
    assert main(argv) == 0
    first = (d / "run.tsv").read_text().splitlines()[0].split("\t")
    assert first[0] == "q0" and first[2] == "1"


def test_saved_index_reloads_to_the_same_results(data: dict) -> None:
    d = data["dir"]
    base = ["--query_reps", str(d / "queries"), "--depth", "10", "--index_factory", "HNSW32"]
    main(
        [
            *base,
            "--passage_reps",
            str(d / "corpus"),
            "--save_ranking_to",
            str(d / "a.trec"),
            "--save_index",
            str(d / "index"),
        ]
    )
    main([*base, "--load_index", str(d / "index"), "--save_ranking_to", str(d / "b.trec")])
    assert (d / "a.trec").read_text() == (d / "b.trec").read_text()
    index, ids = load_index(d / "index")
    assert ids == data["doc_ids"]
    assert index.ntotal == 300


def test_hnsw_and_ivf_factories_find_the_exact_neighbour_mostly(data: dict) -> None:
    _, exact = search(build_index(data["passages"]), data["queries"], 1, 128)
    for factory in ("HNSW32", "IVF4,Flat"):
        index = build_index(data["passages"], factory, train_sample=200)
        if factory.startswith("IVF"):
            index.nprobe = 4
        _, rows = search(index, data["queries"], 1, 128)
        assert (rows == exact).mean() > 0.8, factory


def test_bad_factory_is_a_config_error(data: dict) -> None:
    with pytest.raises(ConfigError, match="'Bogus12'") as info:
        build_index(data["passages"], "Bogus12")
    assert "\n" not in str(info.value)
    assert "could not parse" in str(info.value)
    with pytest.raises(ConfigError, match="IVF512,Flat"):
        build_index(data["passages"], "IVF512,Flat")


def test_dimension_mismatch(data: dict) -> None:
    index = build_index(data["passages"])
    with pytest.raises(DataError, match="query dimension 8 does not match index dimension 16"):
        search(index, np.zeros((2, 8), dtype=np.float32), 5, 128)
    d = data["dir"]
    save_embeddings(d / "short", ["x"], np.zeros((1, 8), dtype=np.float32), {})
    with pytest.raises(DataError, match="passage dimension 16 does not match query dimension 8"):
        main(
            [
                "--query_reps",
                str(d / "short"),
                "--passage_reps",
                str(d / "corpus"),
                "--save_ranking_to",
                str(d / "run.trec"),
            ]
        )
    assert not (d / "run.trec").exists()


def test_saved_index_with_wrong_ids_is_refused(data: dict) -> None:
    folder = data["dir"] / "index"
    save_index(build_index(data["passages"]), data["doc_ids"], folder)
    (folder / "ids.txt").write_text("d0\n")
    with pytest.raises(DataError, match="1 ids for 300 vectors"):
        load_index(folder)


def test_remove_query_from_results(tmp_path: Path) -> None:
    vectors = _vectors(6, seed=3)
    ids = ["a", "b", "c", "d", "e", "f"]
    save_embeddings(tmp_path / "corpus", ids, vectors, {})
    save_embeddings(tmp_path / "queries", ids[:2], vectors[:2], {})
    argv = [
        "--query_reps",
        str(tmp_path / "queries"),
        "--passage_reps",
        str(tmp_path / "corpus"),
        "--depth",
        "3",
        "--save_ranking_to",
        str(tmp_path / "run.trec"),
    ]
    main(argv)
    kept = read_run(tmp_path / "run.trec")
    main([*argv, "--remove_query_from_results"])
    removed = read_run(tmp_path / "run.trec")
    assert "a" in kept["a"] and "a" not in removed["a"]
    assert all(len(docs) == 3 for docs in removed.values())


def test_cli_leaves_no_partial_run_on_error(tmp_path: Path) -> None:
    vectors = _vectors(4, seed=4)
    save_embeddings(tmp_path / "corpus", ["a", "b", "c", "d"], vectors, {})
    save_embeddings(tmp_path / "queries", ["ok", "has space"], vectors[:2], {})
    with pytest.raises(DensekitError, match="contains whitespace"):
        main(
            [
                "--query_reps",
                str(tmp_path / "queries"),
                "--passage_reps",
                str(tmp_path / "corpus"),
                "--save_ranking_to",
                str(tmp_path / "run.trec"),
            ]
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "queries"]


def test_cli_flag_conflicts(data: dict) -> None:
    d = data["dir"]
    with pytest.raises(ConfigError):
        main(["--query_reps", str(d / "queries"), "--save_ranking_to", str(d / "r")])
    with pytest.raises(ConfigError):
        main(
            [
                "--query_reps",
                str(d / "queries"),
                "--passage_reps",
                str(d / "corpus"),
                "--save_ranking_to",
                str(d / "r"),
                "--shard_by_shard",
                "--save_index",
                str(d / "i"),
            ]
        )
