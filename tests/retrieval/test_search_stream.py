"""Search at scale: streamed runs against numpy's exact top-k, index presets, bad flags."""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np
import pytest

from densekit.commands import main as cli
from densekit.data.runs import read_run
from densekit.retrieval.embeddings import save_embeddings
from densekit.retrieval.index import (
    build_planned,
    load_index,
    merge_search_params,
    plan_index,
    set_search_params,
)


def _normal(rows: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


@pytest.fixture
def folders(tmp_path: Path) -> dict:
    passages, queries = _normal(400, 16, seed=1), _normal(37, 16, seed=2)
    doc_ids, query_ids = [f"d{i}" for i in range(400)], [f"q{i}" for i in range(37)]
    for number, (start, stop) in enumerate([(0, 150), (150, 320), (320, 400)]):
        shard = tmp_path / "corpus" / f"shard-{number}"
        save_embeddings(shard, doc_ids[start:stop], passages[start:stop], {})
    save_embeddings(tmp_path / "queries", query_ids, queries, {})
    return {
        "dir": tmp_path,
        "passages": passages,
        "queries": queries,
        "doc_ids": doc_ids,
        "query_ids": query_ids,
    }


def _search(folders: dict, out: str, *flags: str) -> int:
    d = folders["dir"]
    argv = ["search", "--query_reps", str(d / "queries"), "--passage_reps", str(d / "corpus")]
    return cli([*argv, "--save_ranking_to", str(d / out), *flags])


def test_streamed_run_equals_numpy_exact_top_k(folders: dict) -> None:
    """FAISS's float32 inner products against numpy's float64 ones: 1e-5 relatively, and 1e-5
    of the row's largest score for any score near zero."""
    # 37 queries in batches of 5: the run file is written over 8 searched batches
    assert _search(folders, "run.trec", "--depth", "15", "--batch_size", "5") == 0
    run = read_run(folders["dir"] / "run.trec")
    scores = folders["queries"].astype(np.float64) @ folders["passages"].astype(np.float64).T
    assert list(run) == folders["query_ids"]
    for row, qid in enumerate(folders["query_ids"]):
        top = np.argsort(-scores[row], kind="stable")[:15]
        assert list(run[qid]) == [folders["doc_ids"][i] for i in top]
        atol = 1e-5 * max(1.0, np.abs(scores[row]).max())
        np.testing.assert_allclose(list(run[qid].values()), scores[row, top], rtol=1e-5, atol=atol)
    lines = (folders["dir"] / "run.trec").read_text().splitlines()
    assert len(lines) == 37 * 15 and lines[0].split()[3] == "1"


def test_presets_build_the_index_they_name(tmp_path: Path) -> None:
    data = _normal(20_000, 32, seed=3)
    flat = build_planned(data[:500], "flat")
    assert isinstance(faiss.downcast_index(flat), faiss.IndexFlat)
    assert flat.metric_type == faiss.METRIC_INNER_PRODUCT
    hnsw = faiss.downcast_index(build_planned(data[:2000], "hnsw"))
    assert isinstance(hnsw, faiss.IndexHNSWFlat) and hnsw.hnsw.efSearch == 128
    assert hnsw.metric_type == faiss.METRIC_INNER_PRODUCT
    ivfpq = faiss.downcast_index(build_planned(data, "ivfpq", search_params="nprobe=12"))
    # lists: the power of two nearest 4*sqrt(n), at most n/40; PQ: dim/4 one-byte codes
    lists = min(2 ** round(math.log2(4 * math.sqrt(20_000))), 2 ** int(math.log2(20_000 / 40)))
    assert isinstance(ivfpq, faiss.IndexIVFPQ)
    assert (ivfpq.nlist, ivfpq.pq.M, ivfpq.pq.nbits, ivfpq.nprobe) == (lists, 8, 8, 12)
    assert ivfpq.ntotal == 20_000
    big = plan_index("ivfpq", 20_000_000, 384)
    assert big.factory == "IVF16384_HNSW32,PQ96np" and big.search_params == "nprobe=1024"
    assert big.train_sample == 40 * 16384
    refined = plan_index("ivfpq_refine", 20_000_000, 384)
    assert refined.factory == "IVF16384_HNSW32,PQ96np,Refine(SQ8)"
    assert refined.search_params == "nprobe=2048,k_factor_rf=4"
    # the graph's search widens with the corpus (its recall at a fixed efSearch falls)
    efs = [plan_index("hnsw", n, 384).search_params for n in (499_999, 500_000, 2_000_000)]
    assert efs == ["efSearch=128", "efSearch=256", "efSearch=512"]


def _recall_at(rows: np.ndarray, exact: np.ndarray) -> float:
    pairs = zip(rows.tolist(), exact.tolist(), strict=True)
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in pairs]))


def test_refined_ivfpq_wins_back_recall_against_numpy_exact(tmp_path: Path) -> None:
    data, queries = _normal(20_000, 32, seed=4), _normal(100, 32, seed=5)
    exact = np.argsort(-(queries @ data.T), axis=1, kind="stable")[:, :10]
    # every one of the 256 lists probed: what is left to lose is PQ's
    plain = build_planned(data, "ivfpq", search_params="nprobe=256")
    refined = build_planned(data, "ivfpq_refine", search_params="nprobe=256")
    inner = faiss.downcast_index(refined)
    assert isinstance(inner, faiss.IndexRefine)
    assert isinstance(faiss.downcast_index(inner.base_index), faiss.IndexIVFPQ)
    # the user's nprobe replaces the preset's, the preset's re-rank factor stays
    assert faiss.downcast_index(inner.base_index).nprobe == 256 and inner.k_factor == 4
    faiss.write_index(refined, str(tmp_path / "i.faiss"))
    assert faiss.downcast_index(faiss.read_index(str(tmp_path / "i.faiss"))).k_factor == 4
    plain_recall = _recall_at(plain.search(queries, 10)[1], exact)
    recalls = []
    for factor in (1, 4, 16):
        set_search_params(refined, f"k_factor_rf={factor}")
        recalls.append(_recall_at(refined.search(queries, 10)[1], exact))
    # factor 1 re-scores PQ's own top 10 (same set); more candidates, more of the exact top 10
    # (PQ8 codes of 32-d Gaussians are coarse: ~0.5 recall; the 8-bit copies nearly exact)
    assert recalls[0] == pytest.approx(plain_recall) and plain_recall < 0.7
    assert recalls[0] < recalls[1] < recalls[2] and recalls[2] >= 0.97, recalls


@pytest.mark.parametrize(
    ("base", "override", "merged"),
    [
        ("nprobe=64,k_factor_rf=4", "nprobe=8", "nprobe=8,k_factor_rf=4"),
        ("efSearch=128", None, "efSearch=128"),
        (None, "nprobe=3", "nprobe=3"),
        ("nprobe=64", "ht=30", "nprobe=64,ht=30"),
        (None, None, None),
    ],
)
def test_given_search_params_replace_the_presets_by_name(base, override, merged) -> None:
    assert merge_search_params(base, override) == merged


def test_index_command_keeps_the_preset_search_params(folders: dict) -> None:
    d = folders["dir"]
    argv = ["index", "--passage_reps", str(d / "corpus"), "--save_index", str(d / "idx")]
    assert cli([*argv, "--index_preset", "hnsw", "--search_params", "efSearch=40"]) == 0
    index, ids = load_index(d / "idx")
    assert faiss.downcast_index(index).hnsw.efSearch == 40 and ids == folders["doc_ids"]
    assert _search(folders, "s.trec", "--shard_by_shard", "--index_preset", "hnsw") == 0
    run = read_run(d / "s.trec")
    scores = folders["queries"] @ folders["passages"].T
    exact = {folders["doc_ids"][i] for i in np.argsort(-scores[0])[:10]}
    assert len(exact & set(list(run["q0"])[:10])) >= 8  # a graph over 80-170 vectors: ~exact


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--index_preset", "annoy"], "'annoy': expected one of flat, hnsw, ivfpq, ivfpq_refine"),
        (["--search_params", "nprobe"], "--search_params 'nprobe': expected name=number pairs"),
        (["--search_params", "nprobe=4,ef"], "(bad: 'ef')"),
        (["--search_params", "nprobe=4"], "could not set parameter nprobe"),
        (["--index_preset", "ivfpq"], "ivfpq needs at least 10,000 passages"),
        (["--index_preset", "hnsw", "--index_factory", "HNSW8"], "not both"),
    ],
)
def test_bad_index_flags_are_one_line_and_exit_2(folders: dict, capsys, flags, message) -> None:
    assert _search(folders, "bad.trec", *flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (folders["dir"] / "bad.trec").exists()
