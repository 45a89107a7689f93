"""Texts -> vectors with an encoder: length-sorted batches, streamed in bounded memory.

An encoder is anything with ``.settings`` (an ``EncoderConfig``) and ``.encode(batch, is_query)``
taking a dict of torch tensors: the torch ``DenseEncoder`` or an exported ONNX/OpenVINO runner.

Texts are encoded one *window* (64 batches) at a time: the window is tokenized once, sorted by
token count so each batch pads little, and encoded under ``torch.inference_mode`` (bf16 autocast
on request). :func:`encode_table` reads its windows straight from the Arrow table, so encoding a
corpus holds one window of texts and vectors whatever the corpus size; :func:`encode_texts` is
the same for a list already in memory (small sets, tests, benchmarks).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator, Sequence

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from densekit.errors import ConfigError

WINDOW_BATCHES = 64


def _device(encoder) -> torch.device:
    """Where the encoder's inputs go: its parameters' device, a ``device`` attribute, else CPU."""
    parameters = getattr(encoder, "parameters", None)
    if callable(parameters):
        first = next(iter(parameters()), None)
        if first is not None:
            return first.device
    return torch.device(getattr(encoder, "device", None) or "cpu")


def token_ids(tokenizer, texts: Sequence[str], max_len: int, append_eos: bool) -> list[list[int]]:
    """Token ids of ``texts`` cut to ``max_len`` (the EOS token appended within it when asked)."""
    ids = tokenizer(
        list(texts),
        max_length=max_len - 1 if append_eos else max_len,
        truncation=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    if append_eos:
        ids = [[*row, tokenizer.eos_token_id] for row in ids]
    return ids


def _sorted_batches(
    tokenizer, texts: Sequence[str], max_len: int, append_eos: bool, batch_size: int
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Padded batches of ``texts`` (with their positions), longest token count first."""
    ids = token_ids(tokenizer, texts, max_len, append_eos)
    by_length = np.argsort([-len(row) for row in ids], kind="stable")
    for first in range(0, len(ids), batch_size):
        chosen = by_length[first : first + batch_size]
        batch = tokenizer.pad(
            {"input_ids": [ids[i] for i in chosen]},
            return_attention_mask=True,
            return_tensors="pt",
        )
        yield chosen, dict(batch)


class _WindowEncoder:
    """Encodes one window of texts at a time with fixed settings; counts batches for progress."""

    def __init__(
        self,
        encoder,
        tokenizer,
        is_query: bool,
        batch_size: int,
        max_len: int | None,
        bf16: bool,
        bar: tqdm,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        settings = encoder.settings
        self.encoder, self.tokenizer, self.is_query = encoder, tokenizer, is_query
        self.batch_size, self.bf16, self.bar = batch_size, bf16, bar
        self.max_len = max_len or (settings.query_max_len if is_query else settings.passage_max_len)
        self.append_eos = settings.append_eos_token
        self.device = _device(encoder)
        if callable(getattr(encoder, "eval", None)):
            encoder.eval()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors (float32) of ``texts`` in their given order."""
        out: np.ndarray | None = None
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.bf16
            else contextlib.nullcontext()
        )
        batches = _sorted_batches(
            self.tokenizer, texts, self.max_len, self.append_eos, self.batch_size
        )
        with torch.inference_mode(), autocast:
            for rows, batch in batches:
                inputs = {k: v.to(self.device) for k, v in batch.items()}
                reps = self.encoder.encode(inputs, is_query=self.is_query).float().cpu().numpy()
                if out is None:
                    out = np.empty((len(texts), reps.shape[1]), dtype=np.float32)
                out[rows] = reps
                self.bar.update(1)
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _progress(count: int, batch_size: int, is_query: bool, progress: bool) -> tqdm:
    total = -(-count // max(batch_size, 1))
    desc = "queries" if is_query else "passages"
    return tqdm(desc=desc, unit="batch", total=total, disable=not progress)


def format_window(encoder, columns: dict[str, list], is_query: bool) -> list[str]:
    """Texts of one window of rows as the encoder formats them (prefixes, title, separator)."""
    if is_query:
        fmt_query = getattr(encoder, "format_query", encoder.settings.format_query)
        return [fmt_query(text) for text in columns["text"]]
    fmt = getattr(encoder, "format_passage", encoder.settings.format_passage)
    return [fmt(text, title) for title, text in zip(columns["title"], columns["text"], strict=True)]


def table_windows(
    encoder, table: datasets.Dataset, is_query: bool, window: int
) -> Iterator[tuple[list[str], list[str]]]:
    """``(ids, formatted texts)`` for consecutive windows of ``window`` rows of ``table``.

    Only the needed columns are read, one window at a time, from the (memory-mapped) Arrow data.
    """
    id_column = "query_id" if is_query else "docid"
    columns = [id_column, "text"] if is_query else [id_column, "title", "text"]
    files = {entry["filename"] for entry in table.cache_files}
    release_mapped_pages(files)
    for part in table.select_columns(columns).iter(batch_size=window):
        release_mapped_pages(files)
        yield part[id_column], format_window(encoder, part, is_query)


def release_mapped_pages(files: set[str]) -> None:
    """Drop this process's resident pages of the memory-mapped Arrow ``files`` (Linux only).

    Pages of a mapped file count in the resident set once touched, and only opening a
    ``datasets`` file touches about a third of it (its batch metadata, read with the kernel's
    fault-around), so without this the RSS of a streamed encode would still grow with the
    corpus. The pages stay in the page cache: a later read maps them back without disk I/O.
    Only read-only mappings of exactly these files are released, never anonymous memory.
    """
    if not files or _MADVISE is None:
        return
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            regions = [line.split(maxsplit=5) for line in maps]
    except OSError:
        return
    for fields in regions:
        if len(fields) == 6 and fields[5].rstrip("\n") in files and "w" not in fields[1]:
            start, stop = (int(bound, 16) for bound in fields[0].split("-"))
            _MADVISE(ctypes.c_void_p(start), ctypes.c_size_t(stop - start), _MADV_DONTNEED)


def _libc_madvise():
    """libc's ``madvise`` where the platform has it (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return madvise


_MADV_DONTNEED = 4
_MADVISE = _libc_madvise()


def encode_table(
    encoder,
    tokenizer,
    table: datasets.Dataset,
    is_query: bool,
    batch_size: int = 64,
    max_len: int | None = None,
    bf16: bool = False,
    progress: bool = True,
    window_batches: int = WINDOW_BATCHES,
) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(ids, vectors)`` per window of ``table`` rows, in table order (streamed).

    Memory holds one window (``window_batches * batch_size`` texts), whatever the table size.
    """
    bar = _progress(len(table), batch_size, is_query, progress)
    encode = _WindowEncoder(encoder, tokenizer, is_query, batch_size, max_len, bf16, bar)
    with bar:
        for ids, texts in table_windows(encoder, table, is_query, window_batches * batch_size):
            yield ids, encode(texts)


def encode_table_in_memory(
    encoder, tokenizer, table: datasets.Dataset, is_query: bool, **kwargs
) -> tuple[list[str], np.ndarray]:
    """All ids and vectors of a table that fits in memory (queries, evaluation corpora)."""
    ids: list[str] = []
    parts: list[np.ndarray] = []
    for window_ids, vectors in encode_table(encoder, tokenizer, table, is_query, **kwargs):
        ids.extend(window_ids)
        parts.append(vectors)
    if not parts:
        return ids, np.zeros((0, 0), dtype=np.float32)
    return ids, np.concatenate(parts)


def passage_texts(encoder, corpus: datasets.Dataset) -> list[str]:
    """The whole corpus as the encoder formats passages (for small tables: checks, debugging)."""
    return format_window(encoder, corpus.to_dict(), is_query=False)


def query_texts(encoder, queries: datasets.Dataset) -> list[str]:
    """The queries as the encoder formats them (prefix)."""
    return format_window(encoder, queries.to_dict(), is_query=True)


def encode_texts(
    encoder,
    tokenizer,
    texts: list[str],
    is_query: bool,
    batch_size: int = 64,
    max_len: int | None = None,
    bf16: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """Vectors for ``texts`` in their given order (float32), batched by length, longest first.

    The list is in memory already, so it is sorted by characters as a whole first; each window
    of that order is then sorted by tokens, as in :func:`encode_table`.
    """
    bar = _progress(len(texts), batch_size, is_query, progress)
    encode = _WindowEncoder(encoder, tokenizer, is_query, batch_size, max_len, bf16, bar)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out: np.ndarray | None = None
    window = WINDOW_BATCHES * batch_size
    with bar:
        for start in range(0, len(order), window):
            rows = order[start : start + window]
            vectors = encode([texts[i] for i in rows])
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def truncate(vectors: np.ndarray, dim: int, normalize: bool) -> np.ndarray:
    """The first ``dim`` dimensions (Matryoshka), renormalized when the model normalizes."""
    if dim > vectors.shape[1]:
        raise ConfigError(f"--truncate_dim {dim} exceeds the vector size {vectors.shape[1]}")
    cut = np.ascontiguousarray(vectors[:, :dim])
    if normalize:
        cut /= np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
    return cut
