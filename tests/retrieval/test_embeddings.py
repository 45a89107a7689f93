"""The embedding folder format: round trips, shard layouts and the errors users will hit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from densekit.errors import DataError
from densekit.retrieval.embeddings import (
    embedding_shards,
    load_embeddings,
    save_embeddings,
    stream_embeddings,
)


def _random(rows: int, dim: int = 8, seed: int = 0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(dtype)


def test_round_trip_keeps_ids_values_and_meta(tmp_path: Path) -> None:
    array = _random(5, dtype=np.float16)
    ids = ["a", "b", "ü 2", "d", "e"]
    save_embeddings(tmp_path / "emb", ids, array, {"normalized": True})
    loaded_ids, loaded = load_embeddings(tmp_path / "emb")
    assert loaded_ids == ids
    assert loaded.dtype == np.float16
    assert isinstance(loaded, np.memmap)
    np.testing.assert_array_equal(loaded, array)
    meta = json.loads((tmp_path / "emb" / "meta.json").read_text())
    assert meta == {
        "writer": "densekit",
        "dim": 8,
        "count": 5,
        "dtype": "float16",
        "normalized": True,
    }


def test_shard_folders_are_joined_in_natural_order(tmp_path: Path) -> None:
    parts = {2: _random(3, seed=2), 10: _random(2, seed=10), 1: _random(4, seed=1)}
    for number, array in parts.items():
        ids = [f"{number}-{i}" for i in range(len(array))]
        save_embeddings(tmp_path / "enc" / f"shard-{number}", ids, array, {})
    shards = embedding_shards(tmp_path / "enc")
    assert [s.name for s in shards] == ["shard-1", "shard-2", "shard-10"]
    ids, array = load_embeddings(tmp_path / "enc")
    assert ids[:5] == ["1-0", "1-1", "1-2", "1-3", "2-0"]
    np.testing.assert_array_equal(array, np.concatenate([parts[1], parts[2], parts[10]]))


def test_glob_of_folders(tmp_path: Path) -> None:
    save_embeddings(tmp_path / "part-b", ["b"], _random(1, seed=1), {})
    save_embeddings(tmp_path / "part-a", ["a"], _random(1, seed=2), {})
    ids, array = load_embeddings(str(tmp_path / "part-*"))
    assert ids == ["a", "b"]
    assert array.shape == (2, 8)


def test_missing_spec(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        load_embeddings(tmp_path / "nothing-*")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"neither embeddings\.npy nor shard"):
        load_embeddings(tmp_path / "empty")


def test_missing_ids_file(tmp_path: Path) -> None:
    save_embeddings(tmp_path / "emb", ["a", "b"], _random(2), {})
    (tmp_path / "emb" / "ids.txt").unlink()
    with pytest.raises(DataError, match=r"emb: missing ids.txt"):
        load_embeddings(tmp_path / "emb")


def test_ids_count_must_match_rows(tmp_path: Path) -> None:
    save_embeddings(tmp_path / "emb", ["a", "b"], _random(2), {})
    (tmp_path / "emb" / "ids.txt").write_text("a\nb\nc\n")
    with pytest.raises(DataError, match="3 ids for 2 rows"):
        load_embeddings(tmp_path / "emb")


def test_duplicate_ids_across_shards(tmp_path: Path) -> None:
    save_embeddings(tmp_path / "enc" / "shard-0", ["a", "b"], _random(2), {})
    save_embeddings(tmp_path / "enc" / "shard-1", ["c", "a"], _random(2), {})
    with pytest.raises(DataError, match=r"shard-1: duplicate id 'a'"):
        load_embeddings(tmp_path / "enc")


def test_array_must_be_2d(tmp_path: Path) -> None:
    folder = tmp_path / "emb"
    folder.mkdir()
    np.save(folder / "embeddings.npy", np.zeros(3, dtype=np.float32))
    (folder / "ids.txt").write_text("a\nb\nc\n")
    with pytest.raises(DataError, match="must be 2-D"):
        load_embeddings(folder)


def test_bad_save_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="2 ids for 3 embedding rows"):
        save_embeddings(tmp_path / "emb", ["a", "b"], _random(3), {})
    with pytest.raises(DataError, match="duplicate ids"):
        save_embeddings(tmp_path / "emb", ["a", "a"], _random(2), {})
    assert list(tmp_path.iterdir()) == []


def test_streamed_windows_write_the_same_file_as_one_array(tmp_path: Path) -> None:
    array = _random(10, dim=5, seed=3)
    ids = [f"id{i}" for i in range(10)]
    with stream_embeddings(tmp_path / "emb", 10, {"kind": "x"}, dtype="float16") as writer:
        for start, stop in ((0, 4), (4, 4), (4, 9), (9, 10)):
            writer.append(ids[start:stop], array[start:stop])
    loaded_ids, loaded = load_embeddings(tmp_path / "emb")
    assert loaded_ids == ids
    np.testing.assert_array_equal(np.load(tmp_path / "emb" / "embeddings.npy"), loaded)
    np.testing.assert_array_equal(loaded, array.astype(np.float16))
    meta = json.loads((tmp_path / "emb" / "meta.json").read_text())
    assert (meta["count"], meta["dim"], meta["dtype"], meta["kind"]) == (10, 5, "float16", "x")


def test_incomplete_or_inconsistent_streams_leave_nothing(tmp_path: Path) -> None:
    with (
        pytest.raises(DataError, match="3 rows written of the 4 announced"),
        stream_embeddings(tmp_path / "emb", 4, {}) as writer,
    ):
        writer.append(["a", "b", "c"], _random(3))
    with (
        pytest.raises(DataError, match="duplicate ids: 'b' appears twice"),
        stream_embeddings(tmp_path / "emb", 4, {}) as writer,
    ):
        writer.append(["a", "b"], _random(2))
        writer.append(["b", "c"], _random(2))
    with (
        pytest.raises(DataError, match="rows of dimension 4 after 8"),
        stream_embeddings(tmp_path / "emb", 4, {}) as writer,
    ):
        writer.append(["a", "b"], _random(2))
        writer.append(["c", "d"], _random(2, dim=4))
    with (
        pytest.raises(DataError, match="id 3 is empty or contains a line break"),
        stream_embeddings(tmp_path / "emb", 4, {}) as writer,
    ):
        writer.append(["a", "b"], _random(2))
        writer.append(["c\nd", "e"], _random(2))
    assert list(tmp_path.iterdir()) == []
