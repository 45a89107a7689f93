"""The documents behind the hits: titles and texts read from the Arrow-mapped corpus."""

from __future__ import annotations

import os
from collections.abc import Sequence

import datasets

from densekit.data.readers import load_corpus


class CorpusStore:
    """Title and text by docid, from a corpus file densekit reads (memory-mapped Arrow).

    Only the docid -> row map lives in memory; a document's text is read when it is asked for.
    """

    def __init__(self, table: datasets.Dataset, source: str | None = None) -> None:
        self.table, self.source = table, source
        self.rows = {docid: row for row, docid in enumerate(table["docid"])}

    @classmethod
    def open(cls, path: str | os.PathLike) -> CorpusStore:
        return cls(load_corpus(path), str(path))

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, docid: str) -> bool:
        return docid in self.rows

    def document(self, docid: str) -> tuple[str, str]:
        """``(title, text)`` of ``docid`` (empty strings for an id the corpus lacks)."""
        return self.documents([docid])[0]

    def documents(self, docids: Sequence[str]) -> list[tuple[str, str]]:
        """``(title, text)`` of each docid, in order, from one Arrow gather of all their rows
        (a read per row costs about 0.2 ms; ids the corpus lacks get empty strings)."""
        found = [self.rows.get(docid) for docid in docids]
        wanted = [row for row in found if row is not None]
        if not wanted:
            return [("", "")] * len(docids)
        columns = self.table[wanted]
        read = iter(zip(columns["title"], columns["text"], strict=True))
        out = []
        for row in found:
            title, text = next(read) if row is not None else ("", "")
            out.append((title or "", text or ""))
        return out
