"""Read relevance judgments in BEIR tsv or TREC qrels form.

The format is detected per file so that a BEIR download and an official TREC
qrels file can be passed to the same flag.
"""

from __future__ import annotations

import os

from densekit.errors import DataError


def load_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Return ``{query_id: {doc_id: relevance}}`` from a BEIR or TREC qrels file.

    BEIR: ``query-id corpus-id score`` with a header line. TREC: ``qid iter docid rel``
    without one. Columns are split on any whitespace, so tabs, spaces and CRLF all work.
    A malformed line or a repeated (query, doc) pair raises :class:`DataError`.
    """
    qrels: dict[str, dict[str, int]] = {}
    first_seen: dict[tuple[str, str], int] = {}
    columns = 0
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if not columns:
                columns = len(fields)
                if columns not in (3, 4):
                    raise DataError(
                        path,
                        f"expected 3 columns (BEIR: query-id corpus-id score) or 4 "
                        f"(TREC: qid iter docid rel), found {columns}",
                        number,
                    )
                if columns == 3 and not _is_int(fields[2]):
                    continue  # the BEIR header line
            if len(fields) != columns:
                raise DataError(path, f"expected {columns} columns, found {len(fields)}", number)
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


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
