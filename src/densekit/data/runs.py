"""Runs (ranked result lists): the one in-memory type, and its TREC / MS MARCO files.

In memory a run is ``{query_id: {doc_id: score}}`` with each query's documents in rank order
(dicts keep insertion order). TREC runs (``qid Q0 docid rank score tag``) are what trec_eval and
most toolkits exchange; the MS MARCO form (``qid docid rank``) is what its leaderboards expect.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

from densekit.atomic import atomic_open
from densekit.data.text_files import iter_columns
from densekit.errors import DataError, DensekitError

FORMATS = ("trec", "msmarco", "tevatron")
Run = dict[str, dict[str, float]]


def ranked(hits: Mapping[str, float]) -> list[tuple[str, float]]:
    """One query's hits by score descending, equal scores by docid ascending."""
    return sorted(hits.items(), key=lambda hit: (-hit[1], hit[0]))


def read_run(path: str | os.PathLike) -> Run:
    """Return ``{query_id: {doc_id: score}}`` from a TREC or MS MARCO run file.

    The form is detected from the first line: 6 columns is TREC, 3 is MS MARCO, whose
    score is ``-rank`` so that higher is better everywhere, or Tevatron's ``qid docid score``
    when the third column is not an integer. Malformed lines, scores
    that are not numbers and a document listed twice for a query raise DataError.
    """
    run: Run = {}
    layouts = {
        6: "TREC: qid Q0 docid rank score tag",
        3: "MS MARCO: qid docid rank (or Tevatron: qid docid score)",
    }
    for number, fields in iter_columns(path, layouts):
        if len(fields) == 6:
            qid, docid, score = fields[0], fields[2], _parse_score(fields[4], path, number)
        else:
            qid, docid = fields[0], fields[1]
            try:
                score = -float(int(fields[2]))
            except ValueError:  # Tevatron's text form: qid, docid, score
                score = _tevatron_score(fields[2], path, number)
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise DataError(path, f"document {docid!r} listed twice for query {qid!r}", number)
        docs[docid] = score
    if not run:
        raise DataError(path, "no results in the run file")
    return run


def write_run(
    path: str | os.PathLike,
    run: Mapping[str, Mapping[str, float]] | Iterable[tuple[str, Mapping[str, float]]],
    tag: str = "densekit",
    fmt: str = "trec",
) -> None:
    """Write ``run`` atomically, each query's documents by descending score, ranks from 1.

    ``run`` may also be an iterable of ``(query id, hits)`` pairs, written as they come (a
    streamed search). Equal scores keep the given order in the ranks written. Scores are
    written in full (``repr``) so that rounding cannot create ties that trec_eval would reorder.
    """
    if fmt not in FORMATS:
        raise DensekitError(f"unknown run format {fmt!r}; expected one of {', '.join(FORMATS)}")
    _check_token(tag, "run tag")
    with atomic_open(path, "w", encoding="utf-8") as handle:
        for qid, docs in run.items() if isinstance(run, Mapping) else run:
            _check_token(qid, "query id")
            order = sorted(docs.items(), key=lambda doc: doc[1], reverse=True)
            for rank, (docid, score) in enumerate(order, start=1):
                _check_token(docid, "document id")
                if fmt == "trec":
                    handle.write(f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n")
                elif fmt == "tevatron":  # Tevatron's --save_text: qid, docid, score
                    handle.write(f"{qid}\t{docid}\t{float(score)!r}\n")
                else:
                    handle.write(f"{qid}\t{docid}\t{rank}\n")


def _parse_score(text: str, path: str | os.PathLike, line: int) -> float:
    try:
        score = float(text)
    except ValueError:
        raise DataError(path, f"score {text!r} is not a number", line) from None
    if math.isnan(score):
        raise DataError(path, "score is NaN", line)
    return score


def _tevatron_score(text: str, path: str | os.PathLike, line: int) -> float:
    try:
        return _parse_score(text, path, line)
    except DataError:
        raise DataError(
            path, f"rank {text!r} is not an integer (nor a Tevatron score)", line
        ) from None


def _check_token(value: str, what: str) -> None:
    """Reject ids a whitespace-separated file could not read back as one column."""
    if value.split() != [value]:
        raise DensekitError(f"{what} {value!r} is empty or contains whitespace")
