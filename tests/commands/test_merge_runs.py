"""Shards searched apart (as on several machines) and merged equal one search over all shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from densekit.commands import main as cli
from densekit.retrieval.embeddings import save_embeddings


def _shards(tmp_path: Path, passages: np.ndarray, bounds: list[tuple[int, int]]) -> list[Path]:
    ids = [f"p{i:03d}" for i in range(len(passages))][::-1]  # docid order unlike row order
    shards = []
    for number, (start, stop) in enumerate(bounds):
        shard = tmp_path / "corpus" / f"shard-{number}"
        save_embeddings(shard, ids[start:stop], passages[start:stop], {})
        shards.append(shard)
    return shards


def _search(queries: Path, passages: Path, out: Path, depth: str = "12") -> None:
    argv = ["search", "--query_reps", str(queries), "--passage_reps", str(passages)]
    assert cli([*argv, "--depth", depth, "--save_ranking_to", str(out)]) == 0


def test_merged_shard_runs_equal_one_search_even_on_ties(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    passages = rng.standard_normal((90, 6)).astype(np.float32)
    passages /= np.linalg.norm(passages, axis=1, keepdims=True)
    passages[[30, 31, 75, 80]] = passages[[0, 1, 0, 1]]  # exact ties across the three shards
    queries = rng.standard_normal((9, 6)).astype(np.float32)
    queries[1:4] = passages[[0, 1, 2]]  # queries whose top hits are tied
    save_embeddings(tmp_path / "q", [f"q{i}" for i in range(9)], queries, {})
    shards = _shards(tmp_path, passages, [(0, 25), (25, 70), (70, 90)])
    _search(tmp_path / "q", tmp_path / "corpus", tmp_path / "whole.trec")
    for number, shard in enumerate(shards):
        _search(tmp_path / "q", shard, tmp_path / "parts" / f"part-{number}.trec")
    out = tmp_path / "merged.trec"
    argv = ["merge-runs", "--runs", str(tmp_path / "parts" / "part-*.trec"), "--depth", "12"]
    assert cli([*argv, "--save_ranking_to", str(out)]) == 0
    assert out.read_text() == (tmp_path / "whole.trec").read_text()
    # independent check of the order: score descending, then docid ascending (float64 numpy)
    scores = queries.astype(np.float64) @ passages.astype(np.float64).T
    ids = [f"p{i:03d}" for i in range(90)][::-1]
    lines = [line.split() for line in out.read_text().splitlines()]
    for row in range(9):
        got = [(f[2], float(f[4])) for f in lines if f[0] == f"q{row}"]
        expected = sorted(zip(ids, scores[row], strict=True), key=lambda h: (-h[1], h[0]))[:12]
        assert [d for d, _ in got] == [d for d, _ in expected]
        # FAISS's float32 scores against numpy's float64 ones: relative, and to the row's scale
        want = [s for _, s in expected]
        atol = 1e-5 * max(1.0, np.abs(scores[row]).max())
        np.testing.assert_allclose([s for _, s in got], want, rtol=1e-5, atol=atol)
    # q1 is passage row 0, copied to rows 30 and 75 (three shards): its three equal top hits
    assert [f[2] for f in lines if f[0] == "q1"][:3] == sorted(ids[r] for r in (0, 30, 75))


def test_merge_refuses_runs_without_scores_and_overlapping_shards(tmp_path: Path, capsys) -> None:
    (tmp_path / "a.tsv").write_text("q1\td1\t1\n")
    argv = ["merge-runs", "--runs", str(tmp_path / "a.tsv"), "--save_ranking_to"]
    assert cli([*argv, str(tmp_path / "m.trec")]) == 2
    assert "merging needs scores" in capsys.readouterr().err
    (tmp_path / "b.trec").write_text("q1 Q0 d1 1 0.5 x\n")
    (tmp_path / "c.trec").write_text("q1 Q0 d1 1 0.5 x\n")
    argv = ["merge-runs", "--runs", str(tmp_path / "b.trec"), str(tmp_path / "c.trec")]
    assert cli([*argv, "--save_ranking_to", str(tmp_path / "m.trec")]) == 2
    assert "document 'd1' of query 'q1' is in two runs" in capsys.readouterr().err
    assert (
        cli(["merge-runs", "--runs", str(tmp_path / "none-*.trec"), "--save_ranking_to", "x"]) == 2
    )
    assert "matches no file" in capsys.readouterr().err
    assert not (tmp_path / "m.trec").exists()
