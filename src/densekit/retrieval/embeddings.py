"""The on-disk embedding format shared by encode, index and search.

A folder holds ``embeddings.npy`` (float32 or float16, ``[n, d]``), ``ids.txt`` (one id per
line, utf-8) and ``meta.json`` (a free dict). Encoding a large corpus on several machines gives
several such folders; a spec may name one folder, a folder of ``shard-*`` subfolders, or a glob
of folders, so the search side never needs to know how the encoding was split.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

from densekit.atomic import WRITER, atomic_path
from densekit.errors import DataError

EMBEDDINGS_FILE = "embeddings.npy"
IDS_FILE = "ids.txt"
META_FILE = "meta.json"
_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
_SAVE_CHUNK = 65_536


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


def _check_ids(folder: Path | str, ids: Sequence[str], first: int = 1) -> None:
    for number, docid in enumerate(ids, start=first):
        if not docid or "\n" in docid or "\r" in docid:
            raise DataError(str(folder), f"id {number} is empty or contains a line break")


class EmbeddingWriter:
    """Appends ids and rows, window by window, to an embedding folder being written.

    ``embeddings.npy`` is created at its full size (numpy's ``open_memmap``) when the first rows
    arrive; each window is then memory-mapped, written, flushed and unmapped, and its ids go to
    ``ids.txt`` at once. The process so holds one window of vectors and 8 bytes per id (hashes
    for the duplicate check), whatever the corpus size.
    """

    def __init__(self, folder: Path, count: int, dtype: str = "float32", name: str = "") -> None:
        self.folder, self.count, self.dtype = folder, count, np.dtype(dtype)
        self.name = name or str(folder)
        if self.dtype not in _DTYPES:
            raise DataError(self.name, f"embeddings must be float32 or float16, got {self.dtype}")
        self.rows, self.dim, self._offset = 0, 0, 0
        self._hashes = np.empty(count, dtype=np.int64)
        self._ids = open(folder / IDS_FILE, "w", encoding="utf-8", newline="\n")  # noqa: SIM115

    def append(self, ids: Sequence[str], rows: np.ndarray) -> None:
        """The next ``len(ids)`` rows (cast to the file's dtype)."""
        if rows.ndim != 2:
            raise DataError(self.name, f"embeddings must be 2-D, got shape {rows.shape}")
        if len(ids) != rows.shape[0]:
            raise DataError(self.name, f"{len(ids)} ids for {rows.shape[0]} embedding rows")
        if self.rows + len(ids) > self.count:
            raise DataError(self.name, f"more than the {self.count} rows announced")
        if not len(ids):
            return
        if self.rows == 0:
            header = open_memmap(
                self.folder / EMBEDDINGS_FILE, "w+", self.dtype, (self.count, rows.shape[1])
            )
            self._offset, self.dim = header.offset, rows.shape[1]
            del header
        elif rows.shape[1] != self.dim:
            raise DataError(self.name, f"rows of dimension {rows.shape[1]} after {self.dim}")
        _check_ids(self.name, ids, first=self.rows + 1)
        start = self._offset + self.rows * self.dim * self.dtype.itemsize
        view = np.memmap(
            self.folder / EMBEDDINGS_FILE, self.dtype, "r+", offset=start, shape=rows.shape
        )
        view[:] = rows
        view.flush()
        del view
        self._ids.writelines(f"{docid}\n" for docid in ids)
        self._hashes[self.rows : self.rows + len(ids)] = [hash(docid) for docid in ids]
        self.rows += len(ids)

    def close(self) -> dict[str, Any]:
        """Check the folder is complete and its ids unique; the metadata it describes."""
        self._ids.close()
        if self.rows != self.count:
            raise DataError(self.name, f"{self.rows} rows written of the {self.count} announced")
        if self.rows == 0:
            np.save(self.folder / EMBEDDINGS_FILE, np.zeros((0, 0), dtype=self.dtype))
        self._check_unique()
        return {"dim": int(self.dim), "count": self.count, "dtype": str(self.dtype)}

    def _check_unique(self) -> None:
        """Equal hashes are rare: only their ids are read back and compared exactly."""
        self._hashes.sort()
        clashes = set(self._hashes[1:][self._hashes[1:] == self._hashes[:-1]].tolist())
        if not clashes:
            return
        seen: set[str] = set()
        for docid in read_ids(self.folder / IDS_FILE):
            if hash(docid) in clashes:
                if docid in seen:
                    raise DataError(self.name, f"duplicate ids: {docid!r} appears twice")
                seen.add(docid)


@contextlib.contextmanager
def stream_embeddings(
    folder: str | os.PathLike,
    count: int,
    meta: dict[str, Any],
    dtype: str = "float32",
    overwrite: bool = False,
) -> Iterator[EmbeddingWriter]:
    """An :class:`EmbeddingWriter` for ``count`` rows; the folder appears only when complete.

    It is written under a temporary name beside ``folder`` and renamed once every row, id and
    ``meta.json`` is on disk; an error or a kill leaves no folder that looks finished.
    """
    with atomic_path(folder, folder=True, overwrite=overwrite) as tmp:
        tmp.mkdir()
        writer = EmbeddingWriter(tmp, count, dtype, name=str(folder))
        try:
            yield writer
        finally:
            writer._ids.close()
        full_meta = {"writer": WRITER, **writer.close(), **meta}
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2) + "\n", encoding="utf-8")


def save_embeddings(
    folder: str | os.PathLike,
    ids: list[str],
    array: np.ndarray,
    meta: dict[str, Any],
    overwrite: bool = False,
) -> None:
    """Write one embedding folder from arrays in memory (see :func:`stream_embeddings`).

    An earlier densekit embedding folder there is replaced only with ``overwrite``.
    """
    if array.ndim != 2:
        raise DataError(str(folder), f"embeddings must be 2-D, got shape {array.shape}")
    with stream_embeddings(folder, len(ids), meta, str(array.dtype), overwrite) as writer:
        for start in range(0, max(len(ids), array.shape[0]), _SAVE_CHUNK):
            stop = start + _SAVE_CHUNK
            writer.append(ids[start:stop], array[start:stop])


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
