"""Hybrid search: a lexical and a dense searcher fused by weighted min-max score fusion."""

from __future__ import annotations

from collections.abc import Sequence

from densekit.errors import ConfigError
from densekit.retrieval.fusion import fuse
from densekit.search.corpus import CorpusStore
from densekit.search.hits import RankingSearcher


class HybridSearcher(RankingSearcher):
    """``weight * minmax(sparse) + (1 - weight) * minmax(dense)`` over each side's top
    ``depth`` — what ``densekit fuse --method weighted --weights w,1-w`` computes on runs of
    that depth (and the recipe's ``bm25+fine-tuned`` row, with its dev-tuned weight)."""

    def __init__(
        self,
        sparse: RankingSearcher,
        dense: RankingSearcher,
        weight: float = 0.5,
        depth: int = 100,
        corpus: CorpusStore | None = None,
    ) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"the hybrid weight must lie in [0, 1], got {weight}")
        if depth < 1:
            raise ConfigError(f"depth must be positive, got {depth}")
        self.sparse, self.dense, self.weight, self.depth = sparse, dense, weight, depth
        self.corpus = corpus if corpus is not None else getattr(dense, "corpus", None)

    def batch_rank(
        self, queries: Sequence[str], ids: Sequence[str], depth: int
    ) -> dict[str, dict[str, float]]:
        sparse = self.sparse.batch_rank(queries, ids, self.depth)
        return self.fuse(ids, sparse, self.dense.batch_rank(queries, ids, self.depth), depth)

    def fuse(
        self,
        ids: Sequence[str],
        sparse: dict[str, dict[str, float]],
        dense: dict[str, dict[str, float]],
        depth: int,
    ) -> dict[str, dict[str, float]]:
        """The fused top ``depth`` of each side's ranking (each cut to this searcher's depth, as
        the runs ``densekit fuse`` reads are; the server reuses its own two rankings)."""
        runs = [
            {qid: dict(list(side.get(qid, {}).items())[: self.depth]) for qid in ids}
            for side in (sparse, dense)
        ]
        weights = (self.weight, 1.0 - self.weight)
        fused = fuse(runs, "weighted", weights=weights, depth=depth).run
        return {qid: fused.get(qid, {}) for qid in ids}
