"""Text files as densekit reads them: data files behind a path, and their lines.

Every reader goes through :func:`text_lines`, so each gets the same handling of what files
really contain: a UTF-8 byte-order mark is dropped, bytes that are not UTF-8 are reported with
file and line, and a missing path or a folder where a file is expected is one clear error.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from densekit.errors import DataError

DATA_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".tsv", ".tsv.gz")


def data_files(path: str | os.PathLike) -> list[Path]:
    """The data files behind ``path``: the file itself, or a folder's data files sorted by name."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(DATA_SUFFIXES))
        if not files:
            raise DataError(str(p), f"folder holds no data file ({', '.join(DATA_SUFFIXES)})")
        return files
    raise DataError(str(p), "no such file or folder")


def _open_binary(path: Path):
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "no such file")
    if path.is_dir():
        raise DataError(str(path), "is a folder; expected a file")
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _decode(raw: bytes, path: Path, number: int) -> str:
    """One line as text: UTF-8, a byte-order mark on the first line dropped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            str(path),
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
            number,
        ) from None
    return text.removeprefix("\ufeff") if number == 1 else text


def text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` of a UTF-8 (optionally gzipped) text file, BOM stripped; a missing
    file, a folder or bytes that are not UTF-8 raise DataError naming the file and line."""
    path = Path(path)
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            yield number, _decode(raw, path, number)


def _read_text(path: Path) -> str:
    with _open_binary(path) as handle:
        raw = handle.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(str(path), f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line) from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; a ``.json`` array file works too."""
    if path.name.endswith((".json", ".json.gz")):
        text = _read_text(path)
        if text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(str(path), f"broken JSON: {exc.msg}", exc.lineno) from None
            for index, row in enumerate(rows, start=1):
                if not isinstance(row, dict):
                    raise DataError(str(path), f"record {index} is not a JSON object")
                yield index, row
            return
    for number, line in text_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(str(path), f"broken JSON line ({exc.msg})", number) from None
        if not isinstance(row, dict):
            raise DataError(str(path), "line is not a JSON object", number)
        yield number, row


def iter_tsv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, columns)`` of a tab-separated file (CRLF tolerated)."""
    for number, line in text_lines(path):
        line = line.rstrip("\r\n")
        if line.strip():
            yield number, line.split("\t")


def iter_columns(
    path: str | os.PathLike, layouts: dict[int, str]
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` of a whitespace-separated file whose column count is one
    of ``layouts`` (count -> description), fixed by its first line for the whole file."""
    columns = 0
    for number, line in text_lines(path):
        fields = line.split()
        if not fields:
            continue
        if not columns:
            columns = len(fields)
            if columns not in layouts:
                forms = [f"{n} ({text})" for n, text in layouts.items()]
                forms[0] = forms[0].replace(" (", " columns (", 1)
                raise DataError(
                    str(path), f"expected {' or '.join(forms)}, found {columns}", number
                )
        if len(fields) != columns:
            raise DataError(str(path), f"expected {columns} columns, found {len(fields)}", number)
        yield number, fields


def is_tsv(path: Path) -> bool:
    return path.name.endswith((".tsv", ".tsv.gz"))


def file_stamp(files: Iterable[Path]) -> list[str]:
    """Path, size and mtime of each file: part of the Arrow cache key so edited files are re-read."""
    return [f"{f.resolve()}|{f.stat().st_size}|{f.stat().st_mtime_ns}" for f in files]
