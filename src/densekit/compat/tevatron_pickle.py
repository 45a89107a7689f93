"""Tevatron's pickled embeddings ``(reps, lookup)``, read without running the pickle's code.

A pickle can name any importable callable and have it called while loading: ``pickle.load`` on
a file from elsewhere runs whatever it says. This reader's unpickler resolves only the few
numpy names that rebuild an ``ndarray`` and its dtype (and the codec protocol 2 uses for
bytes); anything else is refused before it is imported, so nothing of the file executes. What
comes out must be a float matrix and a list of string or integer ids of the same length.

``densekit search`` reads them as Tevatron's search line names them (``--query_reps
query_emb.pkl --passage_reps 'corpus_emb.*.pkl'``) through :func:`load_reps` and
:func:`shard_specs`; ``densekit convert`` turns them into embedding folders.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from densekit.errors import DataError

# (module, name) pairs numpy (1.x and 2.x) and Python write for arrays, dtypes and scalars.
ALLOWED = frozenset(
    (module, name)
    for prefix in ("numpy.core", "numpy._core")
    for module, name in (
        (f"{prefix}.multiarray", "_reconstruct"),
        (f"{prefix}.multiarray", "scalar"),
        (f"{prefix}.numeric", "_frombuffer"),
    )
) | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
_FLOATS = (np.float16, np.float32, np.float64)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED` names (numpy arrays and dtypes)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        return super().find_class(module, name)


def is_pickle(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file that starts like a pickle (protocol 2 or later)."""
    try:
        with open(path, "rb") as handle:
            return Path(path).is_file() and handle.read(1) == b"\x80"
    except OSError:
        return False


def pickle_files(spec: str | os.PathLike) -> list[str]:
    """The Tevatron pickles ``spec`` names (a file or a glob), sorted; empty for folders."""
    return [m for m in sorted(glob.glob(str(spec))) if is_pickle(m)] or (
        [str(spec)] if is_pickle(spec) else []
    )


def _ids(lookup: Any, path: str) -> list[str]:
    if not isinstance(lookup, (list, tuple, np.ndarray)):
        raise DataError(path, f"the ids must be a list, got {type(lookup).__name__}")
    ids = []
    for number, value in enumerate(lookup, start=1):
        if isinstance(value, (str, int, np.integer)) and not isinstance(value, bool):
            ids.append(str(value))
        else:
            raise DataError(path, f"id {number} is a {type(value).__name__}, not a string or int")
    return ids


def load_tevatron_pickle(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """``(ids, float32 or float16 matrix)`` from one Tevatron pickle, checked."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror})") from None
    try:
        loaded = RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise DataError(path, f"not a Tevatron embedding pickle: {exc}") from None
    except Exception as exc:  # truncated or corrupt files fail in many ways
        raise DataError(path, f"not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, (tuple, list)) or len(loaded) != 2:
        raise DataError(path, "expected a pair (embeddings, ids)")
    reps, lookup = loaded
    if not isinstance(reps, np.ndarray) or reps.dtype.type not in _FLOATS or reps.ndim != 2:
        kind = reps.dtype if isinstance(reps, np.ndarray) else type(reps).__name__
        raise DataError(path, f"embeddings must be a 2-D float array, got {kind}")
    ids = _ids(lookup, path)
    if len(ids) != reps.shape[0]:
        raise DataError(path, f"{len(ids)} ids for {reps.shape[0]} embedding rows")
    if reps.dtype == np.float64:
        reps = reps.astype(np.float32)
    return ids, reps


def load_pickles(files: list[str]) -> tuple[list[str], np.ndarray]:
    """All ids and vectors of several pickles (Tevatron's shards), checked as one corpus."""
    ids: list[str] = []
    arrays: list[np.ndarray] = []
    seen: set[str] = set()
    for path in files:
        shard_ids, reps = load_tevatron_pickle(path)
        if arrays and reps.shape[1] != arrays[0].shape[1]:
            raise DataError(path, f"dimension {reps.shape[1]} differs from {arrays[0].shape[1]}")
        for docid in shard_ids:
            if docid in seen:
                raise DataError(path, f"duplicate id {docid!r}")
            seen.add(docid)
        ids.extend(shard_ids)
        arrays.append(reps)
    if any(a.dtype != arrays[0].dtype for a in arrays):
        arrays = [a.astype(np.float32) for a in arrays]
    return ids, arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def load_reps(spec: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """``(ids, vectors)`` behind an embedding spec: Tevatron pickle(s) or densekit folders."""
    from densekit.retrieval.embeddings import load_embeddings

    files = pickle_files(spec)
    return load_pickles(files) if files else load_embeddings(spec)


@contextlib.contextmanager
def shard_specs(spec: str | os.PathLike) -> Iterator[list]:
    """The shard folders behind ``spec`` for a shard-by-shard search. Pickles are read one at
    a time into temporary embedding folders (under ``TMPDIR``), removed afterwards."""
    from densekit.retrieval.embeddings import embedding_shards, save_embeddings

    files = pickle_files(spec)
    if not files:
        yield embedding_shards(spec)
        return
    with tempfile.TemporaryDirectory(prefix="densekit-pickles-") as tmp:
        folders = []
        for number, path in enumerate(files):
            folder = Path(tmp) / f"shard-{number:05d}"
            save_embeddings(folder, *load_tevatron_pickle(path), {"source": path})
            folders.append(folder)
        yield folders


__all__ = [
    "ALLOWED",
    "RestrictedUnpickler",
    "is_pickle",
    "load_pickles",
    "load_reps",
    "load_tevatron_pickle",
    "pickle_files",
    "shard_specs",
]
