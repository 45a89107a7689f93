"""The on-disk embedding format shared by encode, index and search.

A folder holds ``embeddings.npy`` (float32 or float16, ``[n, d]``), ``ids.txt`` (one id per
line, utf-8) and ``meta.json`` (a free dict). Encoding a large corpus on several machines gives
several such folders; a spec may name one folder, a folder of ``shard-*`` subfolders, or a glob
of folders, so the search side never needs to know how the encoding was split.
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from densekit.atomic import WRITER, atomic_path
from densekit.errors import DataError

EMBEDDINGS_FILE = "embeddings.npy"
IDS_FILE = "ids.txt"
META_FILE = "meta.json"
_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def _natural_key(path: Path) -> list[Any]:
    """Sort ``shard-2`` before ``shard-10`` even when the numbers are not zero-padded."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _expand(folder: Path) -> list[Path]:
    if (folder / EMBEDDINGS_FILE).is_file():
        return [folder]
    shards = [p for p in folder.glob("shard-*") if p.is_dir()]
    if not shards:
        raise DataError(str(folder), f"holds neither {EMBEDDINGS_FILE} nor shard-* folders")
    return sorted(shards, key=_natural_key)


def embedding_shards(spec: str | os.PathLike) -> list[Path]:
    """The embedding folders behind ``spec`` (a folder, a folder of shard-* folders, or a glob)."""
    path = Path(spec)
    if path.is_dir():
        return _expand(path)
    matches = sorted((Path(m) for m in glob.glob(str(spec)) if Path(m).is_dir()), key=str)
    if not matches:
        raise DataError(str(spec), "no such folder, and no folder matches it as a glob")
    return [shard for match in matches for shard in _expand(match)]


def _check_ids(folder: Path, ids: list[str]) -> None:
    for number, docid in enumerate(ids, start=1):
        if not docid or "\n" in docid or "\r" in docid:
            raise DataError(str(folder), f"id {number} is empty or contains a line break")


def save_embeddings(
    folder: str | os.PathLike,
    ids: list[str],
    array: np.ndarray,
    meta: dict[str, Any],
    overwrite: bool = False,
) -> None:
    """Write one embedding folder; it appears only once all three files are complete.

    An earlier densekit embedding folder there is replaced only with ``overwrite``.
    """
    folder = Path(folder)
    if array.ndim != 2:
        raise DataError(str(folder), f"embeddings must be 2-D, got shape {array.shape}")
    if array.dtype not in _DTYPES:
        raise DataError(str(folder), f"embeddings must be float32 or float16, got {array.dtype}")
    if len(ids) != array.shape[0]:
        raise DataError(str(folder), f"{len(ids)} ids for {array.shape[0]} embedding rows")
    _check_ids(folder, ids)
    if len(set(ids)) != len(ids):
        raise DataError(str(folder), "duplicate ids")
    full_meta = {
        "writer": WRITER,
        "dim": int(array.shape[1]),
        "count": int(array.shape[0]),
        "dtype": str(array.dtype),
        **meta,
    }
    with atomic_path(folder, folder=True, overwrite=overwrite) as tmp:
        tmp.mkdir()
        np.save(tmp / EMBEDDINGS_FILE, np.ascontiguousarray(array))
        write_ids(tmp / IDS_FILE, ids)
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2) + "\n", encoding="utf-8")


def write_ids(path: Path, ids: list[str]) -> None:
    """One id per line, ``\\n`` only, so that :func:`read_ids` gives back exactly ``ids``."""
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{docid}\n" for docid in ids)


def read_ids(path: Path) -> list[str]:
    """One id per line; only ``\\n`` separates, so ids may hold any other character."""
    text = path.read_text(encoding="utf-8")
    ids = text.split("\n")
    if ids and ids[-1] == "":
        ids.pop()
    return ids


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of an embedding folder (empty when absent or unreadable)."""
    try:
        meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _load_folder(folder: Path) -> tuple[list[str], np.ndarray]:
    for name in (EMBEDDINGS_FILE, IDS_FILE):
        if not (folder / name).is_file():
            raise DataError(str(folder), f"missing {name}")
    try:
        array = np.load(folder / EMBEDDINGS_FILE, mmap_mode="r")
    except ValueError as exc:
        raise DataError(str(folder / EMBEDDINGS_FILE), f"not a numpy array file ({exc})") from None
    if array.ndim != 2:
        raise DataError(str(folder), f"embeddings must be 2-D, got shape {array.shape}")
    if array.dtype not in _DTYPES:
        raise DataError(str(folder), f"embeddings must be float32 or float16, got {array.dtype}")
    ids = read_ids(folder / IDS_FILE)
    if len(ids) != array.shape[0]:
        raise DataError(str(folder), f"{IDS_FILE} has {len(ids)} ids for {array.shape[0]} rows")
    return ids, array


def load_embeddings(spec: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """All ids and embeddings behind ``spec``; one folder stays memory-mapped, shards are joined."""
    ids: list[str] = []
    arrays: list[np.ndarray] = []
    seen: set[str] = set()
    for folder in embedding_shards(spec):
        folder_ids, array = _load_folder(folder)
        for docid in folder_ids:
            if docid in seen:
                raise DataError(str(folder), f"duplicate id {docid!r}")
            seen.add(docid)
        if arrays and array.shape[1] != arrays[0].shape[1]:
            raise DataError(
                str(folder), f"dimension {array.shape[1]} differs from {arrays[0].shape[1]}"
            )
        ids.extend(folder_ids)
        arrays.append(array)
    if len(arrays) == 1:
        return ids, arrays[0]
    return ids, np.concatenate(arrays)
