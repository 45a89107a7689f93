"""``torchrun`` encode: every rank writes its own shard (by RANK/WORLD_SIZE, so across all nodes),
the shards together are a one-process encode, and a rerun redoes only a missing shard."""

from __future__ import annotations

import random
import shutil
import sys

import numpy as np
from conftest import free_port, run_launcher

from densekit.commands import main as cli
from densekit.retrieval.embeddings import load_embeddings

SHARDS = ["shard-00000-of-00002", "shard-00001-of-00002"]


def _torchrun_encode(model: str, corpus, out) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", free_port(), "-m", "densekit.encode"]  # fmt: skip
    argv = ["--model_name_or_path", model, "--dataset_path", str(corpus)]
    run_launcher([*launcher, *argv, "--encode_output_path", str(out), "--batch_size", "4"])


def test_two_rank_shards_equal_a_one_process_encode_and_resume(
    tiny_model, tmp_path, write_jsonl, monkeypatch
):
    """Torch both ways, but a rank's shard is batched (and padded) otherwise than the whole
    corpus, so matmul shapes and CPU kernels differ: unnormalized (cls) vectors are compared
    to 1e-5 of their largest entry."""
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa"]
    rows = [
        {"_id": f"p{i}", "title": "", "text": " ".join(rng.choices(words, k=rng.randint(1, 30)))}
        for i in range(61)
    ]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows)
    _torchrun_encode(tiny_model, corpus, tmp_path / "ranks")
    assert sorted(p.name for p in (tmp_path / "ranks").iterdir()) == SHARDS

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    argv = ["encode", "--model_name_or_path", tiny_model, "--dataset_path", str(corpus)]
    assert cli([*argv, "--encode_output_path", str(tmp_path / "one"), "--batch_size", "4"]) == 0
    one_ids, one = load_embeddings(tmp_path / "one")
    rank_ids, ranks = load_embeddings(tmp_path / "ranks")
    assert rank_ids == one_ids == [row["_id"] for row in rows]
    atol = 1e-5 * max(1.0, np.abs(one).max())
    np.testing.assert_allclose(ranks, one, atol=atol)

    # a rerun after losing one shard redoes that shard only (each rank as torchrun sets it)
    kept = tmp_path / "ranks" / SHARDS[0] / "embeddings.npy"
    before = kept.stat().st_mtime_ns
    shutil.rmtree(tmp_path / "ranks" / SHARDS[1])
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert (
            cli([*argv, "--encode_output_path", str(tmp_path / "ranks"), "--batch_size", "4"]) == 0
        )
    assert kept.stat().st_mtime_ns == before
    rank_ids, ranks = load_embeddings(tmp_path / "ranks")
    assert rank_ids == one_ids
    np.testing.assert_allclose(ranks, one, atol=atol)


def test_a_resume_with_another_world_size_is_refused(tmp_path, write_jsonl, monkeypatch, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "x"}])
    (tmp_path / "out" / SHARDS[0]).mkdir(parents=True)
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    argv = ["encode", "--dataset_path", str(corpus), "--encode_output_path", str(tmp_path / "out")]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "holds shards of a 2-way split" in err and "\n" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [SHARDS[0]]
