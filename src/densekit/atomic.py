"""Write outputs under a temporary name and rename them when complete, never destroying data.

A crash or a bad record half-way never leaves a file that looks finished. A folder at the
target is replaced only when densekit wrote it (its ``meta.json`` says ``"writer": "densekit"``,
or it is a densekit model folder) and the caller asked to overwrite; a foreign non-empty folder,
or a folder where a file is expected, is refused with one line. A replaced folder keeps what the
user added to it: every folder densekit writes lists its own entries (``MANIFEST_FILE``), and
the others are moved into the new folder.

Temporary names carry the host and process id (``.<name>.<host>-<pid>.<random>.tmp``), so a
later write of the same target removes those that a killed process left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from densekit.errors import ConfigError

WRITER = "densekit"
META_FILE = "meta.json"
MANIFEST_FILE = ".densekit-files.json"
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


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, with one line, a path that cannot be created: a file where a folder of its path
    should be, or a folder this process cannot write in (tried, not guessed from mode bits)."""
    target = Path(path)
    parent = target.absolute().parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():  # a dangling link
            raise ConfigError(f"{target}: cannot be written: {parent} is a broken link")
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{target}: cannot be written: {parent} is a file, not a folder")
    try:
        Path(tempfile.mkdtemp(prefix=".densekit-probe.", dir=parent)).rmdir()
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write in {parent} ({_reason(exc)})") from None


def check_target(path: str | os.PathLike, folder: bool, overwrite: bool = False) -> None:
    """Refuse, before any work, a target that writing ``path`` would destroy or cannot replace."""
    target = Path(path)
    try:
        exists = target.exists()
    except OSError as exc:
        raise ConfigError(f"{target}: cannot be written ({_reason(exc)})") from None
    if not exists:
        check_writable(target)
        return
    if not target.is_dir() or target.is_symlink():
        if folder:
            raise ConfigError(f"{target} is a file; expected a folder path for this output")
        check_writable(target)
        return
    if not folder:
        raise ConfigError(f"{target} is a folder; expected a file path for this output")
    check_writable(target)
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


def _owner_tag() -> str:
    host = re.sub(r"[^A-Za-z0-9]+", "-", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's live process
        return True
    return True


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``target`` left by killed processes of this host; returns them.

    A process that died between moving the old folder aside and moving the new one in left the
    old one in ``.<name>.<tag>.<random>.old/replaced``: it is put back, not deleted.
    """
    target = Path(target)
    parent = target.parent
    host = _owner_tag().rsplit("-", 1)[0]
    pattern = re.compile(
        rf"^\.{re.escape(target.name)}\.{re.escape(host)}-(\d+)\.[^/]*\.(tmp|old)$"
    )
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if not match or _alive(int(match.group(1))):
            continue
        replaced = entry / "replaced"
        if match.group(2) == "old" and replaced.is_dir():
            if not target.exists():
                os.replace(replaced, target)
            else:  # killed while moving the user's entries into the new folder
                ours = _read_manifest(replaced) or set()
                for item in list(replaced.iterdir()):
                    if (
                        item.name not in ours | {MANIFEST_FILE}
                        and not (target / item.name).exists()
                    ):
                        os.replace(item, target / item.name)
        _remove(entry)
        removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _read_manifest(folder: Path) -> set[str] | None:
    try:
        names = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return set(names) if isinstance(names, list) else None


def _user_entries(old: Path, new: Path) -> list[str]:
    """Entries of the densekit folder ``old`` that densekit did not write (to keep).

    Without a manifest (a folder of an older densekit) an entry the new output does not write
    cannot be told from the user's: refused, so that nothing is deleted on a guess."""
    names = {p.name for p in old.iterdir()} - {MANIFEST_FILE, META_FILE}
    fresh = {p.name for p in new.iterdir()}
    ours = _read_manifest(old)
    if ours is None:
        unknown = sorted(names - fresh)
        if unknown:
            raise ConfigError(
                f"{old} holds {', '.join(unknown)}, which this output does not write; "
                "move it away (or choose another path) to replace the folder"
            )
        return []
    kept = sorted(names - ours)
    clash = [name for name in kept if name in fresh]
    if clash:
        raise ConfigError(
            f"{old} holds {', '.join(clash)}, which densekit did not write and would now "
            "replace; move it away (or choose another path)"
        )
    return kept


def _write_manifest(folder: Path) -> None:
    names = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST_FILE)
    (folder / MANIFEST_FILE).write_text(json.dumps(names) + "\n", encoding="utf-8")


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, folder: bool = False, overwrite: bool = False
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` on success only.

    ``folder`` says whether the output is a folder. An existing target is checked first
    (:func:`check_target`); a replaced folder is moved aside and deleted only after the
    new one is in place, less the entries the user added, which move into the new one.
    """
    target = Path(path)
    check_target(target, folder, overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        tmp = Path(
            tempfile.mkdtemp(
                prefix=f".{target.name}.{_owner_tag()}.", suffix=".tmp", dir=target.parent
            )
        )
    except OSError as exc:
        raise ConfigError(f"{target}: cannot be written ({_reason(exc)})") from None
    tmp.rmdir()
    try:
        yield tmp
        check_target(target, folder, overwrite)
        try:
            _commit(target, tmp, folder)
        except OSError as exc:
            raise ConfigError(f"{target}: cannot be written ({_reason(exc)})") from None
    finally:
        _remove(tmp)


def _commit(target: Path, tmp: Path, folder: bool) -> None:
    """Move ``tmp`` onto ``target``; a replaced folder's user entries move into the new one."""
    if not (folder and tmp.is_dir()):
        os.replace(tmp, target)
        return
    _write_manifest(tmp)
    if not target.is_dir():
        os.replace(tmp, target)
        return
    kept = _user_entries(target, tmp)
    old = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.{_owner_tag()}.", suffix=".old", dir=target.parent)
    )
    os.replace(target, old / "replaced")
    os.replace(tmp, target)
    for name in kept:
        os.replace(old / "replaced" / name, target / name)
    _remove(old)  # a kill before this line: the next write of target finishes the job


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file for writing; it replaces ``path`` only when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
