"""Readers: every input format densekit accepts, detected and validated in one place.

Each reader turns files into Arrow tables (``datasets.Dataset``, memory-mapped from the cache),
so a corpus of millions of passages never has to fit in Python objects. Problems are raised as
``DataError`` naming the file and line; readers never tokenize.

Canonical schemas:
  corpus   docid, title, text
  queries  query_id, text
  train    query_id, query, prompt, pos[{docid,title,text}], neg[...], pos_scores, neg_scores,
           pos_grades (a passage given only by id has ``text=None`` and is resolved against a
           corpus; ``pos_grades`` are the positives' graded relevance labels, empty when the
           file gives none: judgments, unlike the teacher's ``pos_scores``)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from densekit.data.text_files import data_files, file_stamp, is_tsv, iter_jsonl, iter_tsv
from densekit.errors import DataError
from densekit.resources import looks_local

logger = logging.getLogger(__name__)

PASSAGE_FEATURES = {
    "docid": datasets.Value("string"),
    "title": datasets.Value("string"),
    "text": datasets.Value("string"),
}
CORPUS_FEATURES = datasets.Features(PASSAGE_FEATURES)
QUERY_FEATURES = datasets.Features(
    {"query_id": datasets.Value("string"), "text": datasets.Value("string")}
)
TRAIN_FEATURES = datasets.Features(
    {
        "query_id": datasets.Value("string"),
        "query": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "pos": [PASSAGE_FEATURES],
        "neg": [PASSAGE_FEATURES],
        "pos_scores": [datasets.Value("float32")],
        "neg_scores": [datasets.Value("float32")],
        "pos_grades": [datasets.Value("float32")],
    }
)

_DOC_ID_KEYS = ("_id", "docid", "doc_id", "id", "pid")
_DOC_TEXT_KEYS = ("text", "contents", "passage", "body")
_QUERY_ID_KEYS = ("_id", "query_id", "qid", "id")
_QUERY_TEXT_KEYS = ("text", "query", "query_text")


def _pick(row: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if key in row:
            return key, row[key]
    return None, None


def _require_text(value: Any, what: str, path: Path, line: int) -> str:
    if value is None:
        raise DataError(str(path), f"missing field {what}", line)
    if not isinstance(value, str):
        raise DataError(str(path), f"{what} must be a string, got {type(value).__name__}", line)
    if not value.strip():
        raise DataError(str(path), f"empty {what}", line)
    return value


def _id_string(value: Any, what: str, path: Path, line: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(str(path), f"{what} must be a string or integer", line)
    text = str(value)
    if not text:
        raise DataError(str(path), f"empty {what}", line)
    return text


def raise_data_error(exc: BaseException) -> None:
    """Re-raise the DataError behind ``exc``: ``datasets`` wraps errors raised in generators and maps."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, DataError):
            raise cause from None
        cause = cause.__cause__ or cause.__context__


def _build(
    generator, features: datasets.Features, files: list[Path], num_proc: int | None = None, **kwargs
) -> datasets.Dataset:
    """Run a validating generator into an Arrow dataset, surfacing our DataError untouched."""
    try:
        return datasets.Dataset.from_generator(
            generator,
            features=features,
            gen_kwargs={"stamps": file_stamp(files), **kwargs},
            num_proc=num_proc,
        )
    except Exception as exc:
        raise_data_error(exc)
        if "corresponds to no data" in str(exc):
            raise DataError(", ".join(map(str, files)), "holds no records (empty)") from None
        raise


# ---------------------------------------------------------------------------- corpus and queries


def corpus_record(row: dict[str, Any] | list[str], path: Path, line: int) -> dict[str, Any]:
    """One corpus entry (a JSON object or tsv columns) as docid/title/text."""
    if isinstance(row, list):
        if len(row) not in (2, 3):
            raise DataError(str(path), "expected id<TAB>text or id<TAB>title<TAB>text", line)
        docid, title, text = row[0], (row[1] if len(row) == 3 else ""), row[-1]
    else:
        refuse_pretokenized(row, path, line)
        key, docid = _pick(row, _DOC_ID_KEYS)
        if key is None:
            raise DataError(str(path), "missing field _id/docid", line)
        title = row.get("title") or ""
        _, text = _pick(row, _DOC_TEXT_KEYS)
    if not isinstance(title, str):
        raise DataError(str(path), "title must be a string", line)
    if title.strip() and text is None:
        text = ""
    elif not title.strip():
        text = _require_text(text, "text", path, line)
    elif not isinstance(text, str):
        raise DataError(str(path), f"text must be a string, got {type(text).__name__}", line)
    return {"docid": _id_string(docid, "document id", path, line), "title": title, "text": text}


def query_record(row: dict[str, Any] | list[str], path: Path, line: int) -> dict[str, Any]:
    """One query (a JSON object or tsv columns) as query_id/text."""
    if isinstance(row, list):
        if len(row) != 2:
            raise DataError(str(path), "expected query_id<TAB>text", line)
        qid, text = row
    else:
        refuse_pretokenized(row, path, line)
        key, qid = _pick(row, _QUERY_ID_KEYS)
        if key is None:
            raise DataError(str(path), "missing field _id/query_id", line)
        _, text = _pick(row, _QUERY_TEXT_KEYS)
    return {
        "query_id": _id_string(qid, "query id", path, line),
        "text": _require_text(text, "query text", path, line),
    }


def _unique_rows(stamps: list[str], record, id_key: str, what: str) -> Iterator[dict[str, Any]]:
    """Records of every file, refusing an id seen before (in any of the files)."""
    seen: dict[str, tuple[str, int]] = {}
    for stamp in stamps:
        path = Path(stamp.split("|")[0])
        rows = iter_tsv(path) if is_tsv(path) else iter_jsonl(path)
        for line, row in rows:
            out = record(row, path, line)
            key = out[id_key]
            if key in seen:
                first_path, first_line = seen[key]
                raise DataError(
                    str(path),
                    f"duplicate {what} {key!r} (first at {first_path}:{first_line})",
                    line,
                )
            seen[key] = (str(path), line)
            yield out


def _corpus_rows(stamps: list[str]) -> Iterator[dict[str, Any]]:
    return _unique_rows(stamps, corpus_record, "docid", "document id")


def _query_rows(stamps: list[str]) -> Iterator[dict[str, Any]]:
    return _unique_rows(stamps, query_record, "query_id", "query id")


def load_corpus(path: str | os.PathLike) -> datasets.Dataset:
    """Corpus (BEIR/Tevatron jsonl, tsv, folder, or a ``datasets`` hub name) as docid/title/text."""
    if not Path(path).exists():
        _refuse_missing_local(path)
        return _from_hub(str(path), _hub_corpus_row, CORPUS_FEATURES)
    files = data_files(path)
    return _build(_corpus_rows, CORPUS_FEATURES, files)


def load_queries(path: str | os.PathLike) -> datasets.Dataset:
    """Queries (BEIR/Tevatron jsonl, tsv, folder, or a hub name) as query_id/text."""
    if not Path(path).exists():
        _refuse_missing_local(path)
        return _from_hub(str(path), _hub_query_row, QUERY_FEATURES)
    files = data_files(path)
    return _build(_query_rows, QUERY_FEATURES, files)


# ---------------------------------------------------------------------------- training files


def _passage_list(value: Any, field: str, path: Path, line: int) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise DataError(str(path), f"{field} must be a list, got {type(value).__name__}", line)
    out = []
    for item in value:
        if isinstance(item, str):
            out.append({"docid": None, "title": "", "text": _require_text(item, field, path, line)})
        elif isinstance(item, dict):
            title = item.get("title") or ""
            _, text = _pick(item, _DOC_TEXT_KEYS)
            if not isinstance(title, str):
                raise DataError(str(path), f"title in {field} must be a string", line)
            if not title.strip():
                text = _require_text(text, f"text in {field}", path, line)
            elif text is not None and not isinstance(text, str):
                raise DataError(str(path), f"text in {field} must be a string", line)
            _, docid = _pick(item, _DOC_ID_KEYS)
            docid = None if docid is None else _id_string(docid, f"docid in {field}", path, line)
            out.append({"docid": docid, "title": title, "text": text or ""})
        else:
            raise DataError(str(path), f"{field} items must be strings or objects", line)
    return out


def _id_list(value: Any, field: str, path: Path, line: int) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise DataError(str(path), f"{field} must be a list, got {type(value).__name__}", line)
    return [
        {"docid": _id_string(v, f"id in {field}", path, line), "title": None, "text": None}
        for v in value
    ]


def _scores(row: dict[str, Any], field: str, expected: int, path: Path, line: int) -> list[float]:
    value = row.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise DataError(str(path), f"{field} must be a list of finite numbers", line)
    if len(value) != expected:
        raise DataError(str(path), f"{field} has {len(value)} values for {expected} passages", line)
    return [float(v) for v in value]


def _grades(row: dict[str, Any], expected: int, path: Path, line: int) -> list[float]:
    """Graded relevance of the positives (qrels labels): positive numbers, one per positive."""
    grades = _scores(row, "pos_grades", expected, path, line)
    if any(grade <= 0 for grade in grades):
        raise DataError(
            str(path), "pos_grades must be positive (a positive's relevance label)", line
        )
    return grades


def refuse_pretokenized(row: dict[str, Any], path: Path, line: int) -> None:
    """Tevatron v1's pre-tokenised records hold token ids: they need the model's tokenizer to
    become text, which ``densekit convert`` does once (readers never tokenize)."""
    text = row.get("text", row.get("query"))
    if isinstance(text, list) and text and all(isinstance(t, int) for t in text):
        raise DataError(
            str(path),
            "pre-tokenised record (token ids, Tevatron v1): turn the file into text with "
            f"`densekit convert --input {path} --tokenizer MODEL --output {path.stem}.text.jsonl`",
            line,
        )


def parse_train_row(row: dict[str, Any], path: Path, line: int) -> dict[str, Any]:
    """Validate one training record of any known layout and return it in the canonical schema."""
    refuse_pretokenized(row, path, line)
    if "positive_passages" in row:  # Tevatron v1
        pos = _passage_list(row["positive_passages"], "positive_passages", path, line)
        neg = _passage_list(row.get("negative_passages", []), "negative_passages", path, line)
    elif "positive_document_ids" in row:  # Tevatron v2 id form
        pos = _id_list(row["positive_document_ids"], "positive_document_ids", path, line)
        neg = _id_list(row.get("negative_document_ids", []), "negative_document_ids", path, line)
    elif "pos" in row:  # FlagEmbedding / PaddleNLP
        pos = _passage_list(row["pos"], "pos", path, line)
        neg = _passage_list(row.get("neg", []), "neg", path, line)
    else:
        raise DataError(
            str(path),
            "missing field: expected positive_passages, positive_document_ids or pos",
            line,
        )
    if not pos:
        raise DataError(str(path), "empty positive list", line)
    _, query = _pick(row, ("query", "query_text"))
    query = _require_text(query, "query", path, line)
    qid = row.get("query_id", row.get("qid"))
    qid = f"{path.name}:{line}" if qid is None else _id_string(qid, "query_id", path, line)
    prompt = row.get("prompt") or ""
    if not isinstance(prompt, str):
        raise DataError(str(path), "prompt must be a string", line)
    return {
        "query_id": qid,
        "query": query,
        "prompt": prompt,
        "pos": pos,
        "neg": neg,
        "pos_scores": _scores(row, "pos_scores", len(pos), path, line),
        "neg_scores": _scores(row, "neg_scores", len(neg), path, line),
        "pos_grades": _grades(row, len(pos), path, line),
    }


def _train_rows(stamps: list[str], max_per_file: int) -> Iterator[dict[str, Any]]:
    for stamp in stamps:
        path = Path(stamp.split("|")[0])
        seen: dict[str, int] = {}
        for count, (line, row) in enumerate(iter_jsonl(path)):
            if count >= max_per_file:
                break
            record = parse_train_row(row, path, line)
            qid = record["query_id"]
            if qid in seen:
                raise DataError(
                    str(path), f"duplicate query_id {qid!r} (first at line {seen[qid]})", line
                )
            seen[qid] = line
            yield record


def load_train(
    path: str | os.PathLike | list[str | os.PathLike],
    max_examples_per_file: int | None = None,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Training records from files or folders of any known layout (several paths, as
    FlagEmbedding's ``--train_data a b``: a folder gives its data files, one level deep);
    ``max_examples_per_file`` caps each file; ``num_proc`` reads files in parallel."""
    if isinstance(path, (list, tuple)):
        if len(path) == 1:
            return load_train(path[0], max_examples_per_file, num_proc)
        for each in path:
            if not Path(each).exists():
                raise DataError(str(each), "no such file or folder")
        files = [f for each in path for f in data_files(each)]
        return _read_train_files(files, max_examples_per_file, num_proc)
    if not Path(path).exists():
        _refuse_missing_local(path)
        return _from_hub(str(path), _hub_train_row, TRAIN_FEATURES)
    return _read_train_files(data_files(path), max_examples_per_file, num_proc)


def _read_train_files(
    files: list[Path], max_examples_per_file: int | None, num_proc: int | None
) -> datasets.Dataset:
    for f in files:
        if is_tsv(f):
            raise DataError(str(f), "training data must be jsonl (tsv is for corpora and queries)")
    limit = max_examples_per_file if max_examples_per_file is not None else 2**62
    procs = min(num_proc or 1, len(files))
    return _build(
        _train_rows,
        TRAIN_FEATURES,
        files,
        num_proc=procs if procs > 1 else None,
        max_per_file=limit,
    )


# ---------------------------------------------------------------------------- hub datasets


def _hub_corpus_row(row: dict[str, Any], index: int, name: str) -> dict[str, Any]:
    return corpus_record(row, Path(name), index + 1)


def _hub_query_row(row: dict[str, Any], index: int, name: str) -> dict[str, Any]:
    return query_record(row, Path(name), index + 1)


def _hub_train_row(row: dict[str, Any], index: int, name: str) -> dict[str, Any]:
    return parse_train_row(row, Path(name), index + 1)


def _refuse_missing_local(path: str | os.PathLike) -> None:
    """A path that reads as local and does not exist is an error, never a hub name."""
    if looks_local(str(path)):
        raise DataError(str(path), "no such file or folder")


def _from_hub(name: str, convert, features: datasets.Features) -> datasets.Dataset:
    """``datasets.load_dataset`` for a hub name (``name``, ``name:split`` or
    ``name:config:split``), converted per record."""
    repo, *rest = name.split(":")
    config, split = (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0] if rest else None)
    try:
        raw = datasets.load_dataset(repo, config, split=split or "train")
    except Exception as exc:
        raise DataError(name, f"not a local file and not loadable with datasets ({exc})") from None
    try:
        return raw.map(
            convert,
            with_indices=True,
            fn_kwargs={"name": name},
            features=features,
            remove_columns=raw.column_names,
        )
    except Exception as exc:
        raise_data_error(exc)
        raise
