"""What every searcher returns, and the one interface searchers share (pyserini's shape)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from densekit.search.corpus import CorpusStore


@dataclass(frozen=True)
class Hit:
    """One retrieved document: its id, score, 1-based rank, and its title and text."""

    docid: str
    score: float
    rank: int
    title: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Searcher(Protocol):
    """``search(query, k)`` -> hits, best first; ``batch_search`` -> hits per query id."""

    def search(self, query: str, k: int = 10) -> list[Hit]: ...

    def batch_search(
        self, queries: Sequence[str], qids: Sequence[str] | None = None, k: int = 10
    ) -> dict[str, list[Hit]]: ...


class RankingSearcher:
    """A searcher that ranks documents (a run) and turns the ranking into hits with text.

    Subclasses implement :meth:`batch_rank`; fusion and reranking use rankings, so a hybrid
    searcher reads no document text for the candidates it drops.
    """

    corpus: CorpusStore | None = None

    def batch_rank(
        self, queries: Sequence[str], ids: Sequence[str], depth: int
    ) -> dict[str, dict[str, float]]:
        """``{qid: {docid: score}}``, each query's top ``depth`` best first."""
        raise NotImplementedError

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.batch_search([query], k=k)["0"]

    def batch_search(
        self, queries: Sequence[str], qids: Sequence[str] | None = None, k: int = 10
    ) -> dict[str, list[Hit]]:
        ids = query_ids(queries, qids)
        run = self.batch_rank(list(queries), ids, k) if ids else {}
        tops = {qid: list(run.get(qid, {}).items())[:k] for qid in ids}
        wanted = [docid for top in tops.values() for docid, _ in top]
        documents = iter(self.corpus.documents(wanted) if self.corpus else [("", "")] * len(wanted))
        return {
            qid: [
                Hit(docid, float(score), rank, *next(documents))
                for rank, (docid, score) in enumerate(top, start=1)
            ]
            for qid, top in tops.items()
        }


def query_ids(queries: Sequence[str], qids: Sequence[str] | None) -> list[str]:
    """The ids ``batch_search`` keys its answer by: the given ones, else ``"0"``, ``"1"``, …"""
    ids = [str(i) for i in range(len(queries))] if qids is None else [str(q) for q in qids]
    if len(ids) != len(queries):
        raise ValueError(f"{len(queries)} queries but {len(ids)} query ids")
    if len(set(ids)) != len(ids):
        raise ValueError("query ids must be unique")
    return ids
