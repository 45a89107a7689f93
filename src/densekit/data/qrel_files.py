"""(query, passage, score) triplets from every file a Trove qrel config may name.

Qrels (BEIR tsv or TREC), TREC runs (6 columns), Trove's grouped jsonl (``{"qid", "docid":
[...], "score": [...]}``) and Tevatron training jsonl (``query_id`` with positive passages
scored 1 and negative ones 0, as Trove reads them). Triplets keep the file's order (Trove's
``group_first_k`` depends on it); each carries its line for error messages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from densekit.data.qrels import load_qrels
from densekit.data.runs import read_run
from densekit.data.text_files import iter_jsonl, text_lines
from densekit.errors import DataError

_JSON = (".jsonl", ".json", ".jsonl.gz", ".json.gz")


class Triplet(NamedTuple):
    qid: str
    docid: str
    score: float
    line: int | None


def _ids(value: Any, what: str, path: Path, line: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(str(path), f"{what} must be a string or integer", line)
    return str(value)


def _grouped(row: dict, path: Path, line: int) -> list[Triplet]:
    docids, scores = row.get("docid"), row.get("score")
    if not isinstance(docids, list) or not isinstance(scores, list) or len(docids) != len(scores):
        raise DataError(str(path), "docid and score must be lists of the same length", line)
    qid = _ids(row.get("qid"), "qid", path, line)
    out = []
    for docid, score in zip(docids, scores, strict=True):
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise DataError(str(path), f"score {score!r} is not a number", line)
        out.append(Triplet(qid, _ids(docid, "docid", path, line), float(score), line))
    return out


def _tevatron(row: dict, path: Path, line: int) -> list[Triplet]:
    qid = _ids(row.get("query_id"), "query_id", path, line)
    out = []
    for key, score in (("negative_passages", 0.0), ("positive_passages", 1.0)):
        for passage in row.get(key) or []:
            docid = passage.get("docid") if isinstance(passage, dict) else None
            out.append(Triplet(qid, _ids(docid, f"docid in {key}", path, line), score, line))
    return out


def _from_jsonl(path: Path) -> list[Triplet]:
    triplets: list[Triplet] = []
    for line, row in iter_jsonl(path):
        if "docid" in row and "qid" in row:
            triplets += _grouped(row, path, line)
        elif "positive_passages" in row:
            triplets += _tevatron(row, path, line)
        else:
            raise DataError(
                str(path),
                "expected grouped qrels (qid, docid, score) or Tevatron rows (query_id, "
                "positive_passages)",
                line,
            )
    return triplets


def read_triplets(path: str | os.PathLike) -> list[Triplet]:
    """Every (qid, docid, score) of one qrels, run, grouped-qrel or Tevatron file."""
    source = Path(path)
    if source.name.endswith(_JSON):
        triplets = _from_jsonl(source)
    else:
        first = next((line for _, line in text_lines(source) if line.strip()), "")
        if len(first.split()) == 6:
            scored = {q: dict(d) for q, d in read_run(source).items()}
        else:
            scored = {q: {d: float(s) for d, s in docs.items()} for q, docs in load_qrels(source).items()}  # fmt: skip
        triplets = [Triplet(q, d, s, None) for q, docs in scored.items() for d, s in docs.items()]
    if not triplets:
        raise DataError(str(source), "holds no (query, passage, score) triplets")
    return triplets


def line_of(path: str | os.PathLike, *tokens: str) -> int | None:
    """First line of a text file holding all ``tokens`` as fields (for error messages)."""
    for number, line in text_lines(path):
        fields = set(line.split())
        if all(t in fields for t in tokens):
            return number
    return None


def read_ids(path: str | os.PathLike) -> set[str]:
    """Query ids of a subset file: a queries file (jsonl/tsv) or one id per line."""
    from densekit.data.readers import load_queries

    source = Path(path)
    if source.name.endswith((*_JSON, ".tsv", ".tsv.gz")):
        return set(load_queries(source)["query_id"])
    return {line.strip() for _, line in text_lines(source) if line.strip()}
