"""Read relevance judgments in BEIR tsv or TREC qrels form.

The format is detected per file so that a BEIR download and an official TREC
qrels file can be passed to the same flag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from densekit.data.text_files import iter_columns
from densekit.errors import DataError

if TYPE_CHECKING:  # read_run/load_qrels load no data library (densekit evaluate starts fast)
    import datasets


def load_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Return ``{query_id: {doc_id: relevance}}`` from a BEIR or TREC qrels file.

    BEIR: ``query-id corpus-id score`` with a header line. TREC: ``qid iter docid rel``
    without one. Columns are split on any whitespace, so tabs, spaces and CRLF all work.
    A malformed line or a repeated (query, doc) pair raises :class:`DataError`.
    """
    qrels: dict[str, dict[str, int]] = {}
    first_seen: dict[tuple[str, str], int] = {}
    layouts = {3: "BEIR: query-id corpus-id score", 4: "TREC: qid iter docid rel"}
    for number, fields in iter_columns(path, layouts):
        if number == 1 and len(fields) == 3 and not _is_int(fields[2]):
            continue  # the BEIR header line
        qid, docid, score = fields[0], fields[-2], fields[-1]
        if not _is_int(score):
            raise DataError(path, f"relevance {score!r} is not an integer", number)
        if (qid, docid) in first_seen:
            raise DataError(
                path,
                f"duplicate judgment for query {qid!r} and document {docid!r} "
                f"(first on line {first_seen[qid, docid]})",
                number,
            )
        first_seen[qid, docid] = number
        qrels.setdefault(qid, {})[docid] = int(score)
    if not qrels:
        raise DataError(path, "no relevance judgments in the file")
    return qrels


def keep_judged(
    queries: datasets.Dataset, qrels: Mapping[str, object], source: str = "qrels"
) -> datasets.Dataset:
    """The queries that ``qrels`` judges; none in common is an error naming ``source``."""
    kept = queries.filter(lambda qid: qid in qrels, input_columns="query_id")
    if len(kept) == 0:
        raise DataError(source, "no query id in common with the queries")
    return kept


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
