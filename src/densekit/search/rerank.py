"""A searcher that reranks another searcher's top hits with a cross-encoder (two stages)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import islice

from densekit.modeling.reranker import CrossEncoderReranker
from densekit.search.corpus import CorpusStore
from densekit.search.hits import RankingSearcher


class RerankingSearcher(RankingSearcher):
    """``first_stage`` retrieves ``depth`` candidates per query; ``reranker`` reorders them.

    The passages' title and text come from ``corpus`` (default: the first stage's), so a
    first stage that only ranks ids (e.g. dense over an index) can be reranked. Results past
    the reranked depth are not returned: a cross-encoder score and a first-stage score are not
    comparable, so mixing them would misorder the list.
    """

    def __init__(
        self,
        first_stage: RankingSearcher,
        reranker: CrossEncoderReranker,
        depth: int = 100,
        corpus: CorpusStore | None = None,
        batch_size: int = 32,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        self.first_stage = first_stage
        self.reranker = reranker
        self.depth = depth
        self.batch_size = batch_size
        self.corpus = corpus if corpus is not None else getattr(first_stage, "corpus", None)
        if self.corpus is None:
            raise ValueError("RerankingSearcher needs the passages' text: pass corpus=CorpusStore")

    def batch_rank(
        self, queries: Sequence[str], ids: Sequence[str], depth: int
    ) -> dict[str, dict[str, float]]:
        """The first stage's top ``self.depth`` per query reranked; the best ``depth`` kept."""
        first = self.first_stage.batch_rank(queries, ids, self.depth)
        return self.rerank(first, dict(zip(ids, queries, strict=True)), ids, depth)

    def rerank(
        self,
        first: Mapping[str, Mapping[str, float]],
        queries: Mapping[str, str],
        ids: Sequence[str],
        depth: int,
    ) -> dict[str, dict[str, float]]:
        """Rerank first-stage rankings already computed (``{qid: {docid: score}}``, best
        first; each cut to ``self.depth``): the pairs of all ``ids`` are scored together, and
        each query's best ``depth`` kept. The server reranks a batch's rankings this way."""
        ranked = self.reranker.rerank_run(
            ((qid, first.get(qid, {})) for qid in ids),
            queries,
            self.corpus.document,
            depth=self.depth,
            batch_size=self.batch_size,
            queries_per_chunk=max(1, len(ids)),
        )
        return {qid: dict(islice(hits.items(), depth)) for qid, hits in ranked}
