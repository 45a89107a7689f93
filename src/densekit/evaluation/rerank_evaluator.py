"""Exact evaluation of a cross-encoder being trained: rerank a first stage's top hits, score.

At each evaluation every judged dev query's top ``depth`` hits of a fixed first-stage run are
scored pair by pair by the current weights (all pairs, nothing approximated), reordered, and the
reranked run is scored on the qrels with :func:`densekit.evaluation.metrics.evaluate`
(trec_eval's semantics). Under several processes each rank reranks its contiguous share of the
queries and every rank gathers all of them, so all agree on the metrics (and the best
checkpoint). It knows nothing about the trainer: ``evaluator(reranker) -> {"ndcg@10": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from densekit.errors import ConfigError
from densekit.evaluation.metrics import evaluate, parse_metrics


class RerankEvaluator:
    """Rerank each judged query's top ``depth`` of ``run`` and compute ``metrics`` on ``qrels``.

    Queries: those of ``qrels`` with a judgment and a text in ``queries``; one the run has no
    hit for scores 0 (trec_eval ``-c``). Passage texts come from ``document(docid) -> (title,
    text)``, read once here, so a run naming a passage the corpus lacks fails before training.
    """

    def __init__(
        self,
        run: Mapping[str, Mapping[str, float]],
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        document: Callable[[str], tuple[str, str]],
        metrics: Sequence[str] | str = ("ndcg@10",),
        depth: int = 100,
        batch_size: int = 32,
        keep_runs: bool = False,
    ) -> None:
        if depth < 1:
            raise ConfigError(f"evaluation depth must be positive, got {depth}")
        if batch_size < 1:
            raise ConfigError(f"evaluation batch size must be positive, got {batch_size}")
        self.metrics = parse_metrics(metrics)
        self.qrels = {q: dict(rels) for q, rels in qrels.items() if rels and q in queries}
        if not self.qrels:
            raise ConfigError("the evaluation qrels share no judged query with the queries")
        self.queries = {q: queries[q] for q in self.qrels}
        self.candidates: dict[str, dict[str, float]] = {}
        for qid in sorted(self.qrels):
            hits = run.get(qid)
            if hits:  # best first; equal scores keep the run's order
                ranked = sorted(hits.items(), key=lambda hit: -hit[1])[:depth]
                self.candidates[qid] = dict(ranked)
        if not self.candidates:
            raise ConfigError("the evaluation run has no hits for any judged query")
        self.texts = {d: document(d) for hits in self.candidates.values() for d in hits}
        self.depth, self.batch_size = depth, batch_size
        # with keep_runs, each evaluation's reranked run is kept (tests, model selection reports)
        self.keep_runs, self.runs = keep_runs, []

    @classmethod
    def from_files(
        cls,
        run: str,
        queries: str,
        qrels: str,
        document: Callable[[str], tuple[str, str]],
        **kwargs: Any,
    ) -> RerankEvaluator:
        """Read the run, queries and qrels files now, so bad ones fail before training."""
        from densekit.data.qrels import load_qrels
        from densekit.data.readers import load_queries
        from densekit.data.runs import read_run

        judged = load_qrels(qrels)
        table = load_queries(queries)
        texts = dict(zip(table["query_id"], table["text"], strict=True))
        if not any(q in judged for q in texts):
            raise ConfigError(f"--eval_qrels {qrels} shares no query with --eval_queries {queries}")
        return cls(read_run(run), texts, judged, document, **kwargs)

    @property
    def pairs(self) -> int:
        """Pairs scored per evaluation."""
        return sum(len(hits) for hits in self.candidates.values())

    def rerank(self, reranker: Any) -> dict[str, dict[str, float]]:
        """This process's share of the queries reranked, gathered from every process."""
        from densekit.training import distributed

        qids = list(self.candidates)
        world, rank = distributed.world_size(), distributed.rank()
        if world > 1:
            share = -(-len(qids) // world)
            qids = qids[rank * share : (rank + 1) * share]
        mine = dict(
            reranker.rerank_run(
                ((qid, self.candidates[qid]) for qid in qids),
                self.queries,
                self.texts.__getitem__,
                depth=self.depth,
                batch_size=self.batch_size,
            )
        )
        if world == 1:
            return mine
        import torch.distributed as dist

        everything: list = [None] * world
        dist.all_gather_object(everything, mine)
        return {qid: hits for part in everything for qid, hits in part.items()}

    def __call__(self, reranker: Any, tokenizer: Any = None) -> dict[str, float]:
        """The metrics of ``reranker`` on the reranked run (``tokenizer`` unused: the reranker
        carries its own; accepted so the bi-encoder's evaluator signature fits)."""
        run = self.rerank(reranker)
        if self.keep_runs:
            self.runs.append(run)
        return evaluate(run, self.qrels, self.metrics)[1]


__all__ = ["RerankEvaluator"]
