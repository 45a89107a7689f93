"""Write outputs under a temporary name and rename them when complete, never destroying data.

A crash or a bad record half-way never leaves a file that looks finished. A folder at the
target is replaced only when densekit wrote it (its ``meta.json`` says ``"writer": "densekit"``,
or it is a densekit model folder) and the caller asked to overwrite; a foreign non-empty folder,
or a folder where a file is expected, is refused with one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from densekit.errors import ConfigError

WRITER = "densekit"
META_FILE = "meta.json"
_MODEL_MARK = "densekit_config.json"


def written_by_densekit(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is an output densekit wrote (recognised by its own metadata)."""
    folder = Path(folder)
    if (folder / _MODEL_MARK).is_file():
        return True
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("writer") == WRITER


def check_target(path: str | os.PathLike, folder: bool, overwrite: bool = False) -> None:
    """Refuse, before any work, a target that writing ``path`` would destroy or cannot replace."""
    target = Path(path)
    if not target.exists():
        return
    if not target.is_dir() or target.is_symlink():
        if folder:
            raise ConfigError(f"{target} is a file; expected a folder path for this output")
        return
    if not folder:
        raise ConfigError(f"{target} is a folder; expected a file path for this output")
    if not any(target.iterdir()):
        return
    if not written_by_densekit(target):
        raise ConfigError(
            f"{target} is a non-empty folder densekit did not write; choose another path"
        )
    if not overwrite:
        raise ConfigError(
            f"{target} holds an earlier densekit output; pass --overwrite to replace it"
        )


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, folder: bool = False, overwrite: bool = False
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` on success only.

    ``folder`` says whether the output is a folder. An existing target is checked first
    (:func:`check_target`); a replaced folder is moved aside and deleted only after the
    new one is in place.
    """
    target = Path(path)
    check_target(target, folder, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.rmdir()
    old: Path | None = None
    try:
        yield tmp
        check_target(target, folder, overwrite)
        if folder and target.is_dir():
            old = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
            )
            os.replace(target, old / "replaced")
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, old):
            if leftover is not None and leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover is not None and leftover.exists():
                leftover.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file for writing; it replaces ``path`` only when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
