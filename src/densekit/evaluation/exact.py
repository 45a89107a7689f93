"""Exact full-corpus evaluation of a model being trained: encode, search exactly, score.

At each evaluation every rank encodes its contiguous shard of the corpus (and of the queries),
rank 0 gathers them, searches with FAISS Flat and computes the metrics on the qrels, and the
metrics are broadcast so every rank agrees on the best checkpoint. The trainer calls it with the
current weights; it knows nothing about the trainer.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import numpy as np
import torch.distributed as dist

from densekit.data.qrels import keep_judged, load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.encoders.batched import BatchedTextEncoder
from densekit.encoders.streaming import encode_all
from densekit.errors import ConfigError
from densekit.evaluation.metrics import evaluate, parse_metrics
from densekit.modeling.encoder import DenseEncoder
from densekit.retrieval.index import build_index
from densekit.retrieval.search import search_index
from densekit.training import distributed


class ExactEvaluator:
    """``evaluator(encoder, tokenizer) -> {"ndcg@10": ..., ...}`` over a fixed corpus and qrels."""

    def __init__(
        self,
        corpus: datasets.Dataset,
        queries: datasets.Dataset,
        qrels: dict[str, dict[str, int]],
        metrics: Sequence[str] = ("ndcg@10", "mrr@10", "recall@100"),
        depth: int = 100,
        batch_size: int = 64,
        bf16: bool = False,
        keep_runs: bool = False,
    ) -> None:
        self.corpus, self.qrels = corpus, qrels
        # with keep_runs, rank 0 keeps each evaluation's run: a caller that keeps the best
        # checkpoint then has its run without encoding the corpus once more
        self.keep_runs, self.runs = keep_runs, []
        self.queries = keep_judged(queries, qrels, "eval qrels")
        self.metrics = parse_metrics(metrics)
        self.depth, self.batch_size, self.bf16 = depth, batch_size, bf16
        cutoffs = [int(m.split("@")[1]) for m in self.metrics]
        if max(cutoffs) > depth:
            raise ConfigError(
                f"eval metric cut-off {max(cutoffs)} exceeds the search depth {depth}"
            )

    @classmethod
    def from_files(cls, corpus: str, queries: str, qrels: str, **kwargs) -> ExactEvaluator:
        """Read and check the eval files up front, so bad ones fail before training starts."""
        judged = load_qrels(qrels)
        table = load_queries(queries)
        if not any(q in judged for q in table["query_id"]):
            raise ConfigError(f"--eval_qrels {qrels} shares no query with --eval_queries {queries}")
        return cls(load_corpus(corpus), table, judged, **kwargs)

    def _encode_shard(self, encoder, tokenizer, table, is_query: bool) -> tuple[list, np.ndarray]:
        world, rank = distributed.world_size(), distributed.rank()
        shard = table.shard(world, rank, contiguous=True) if world > 1 else table
        text_encoder = BatchedTextEncoder(encoder, tokenizer, "torch", self.bf16)
        return encode_all(text_encoder, shard, is_query, self.batch_size, progress=False)

    def __call__(self, encoder: DenseEncoder, tokenizer) -> dict[str, float]:
        was_training = encoder.training
        parts = [
            self._encode_shard(encoder, tokenizer, self.corpus, is_query=False),
            self._encode_shard(encoder, tokenizer, self.queries, is_query=True),
        ]
        encoder.train(was_training)
        gathered = _gather(parts)
        result: list = [None]
        if gathered is not None:
            (doc_ids, docs), (query_ids, queries) = gathered
            run = search_index(query_ids, queries, build_index(docs), doc_ids, self.depth)
            result[0] = evaluate(run, self.qrels, self.metrics)[1]
            if self.keep_runs:
                self.runs.append(run)
        if distributed.world_size() > 1:
            dist.broadcast_object_list(result, src=0)
        return result[0]


def _gather(parts: list[tuple[list, np.ndarray]]) -> list[tuple[list, np.ndarray]] | None:
    """Every rank's (ids, vectors) joined in rank order on rank 0 (None on the others)."""
    if distributed.world_size() == 1:
        return parts
    everything: list = [None] * distributed.world_size()
    dist.all_gather_object(everything, parts)
    if distributed.rank() != 0:
        return None
    joined = []
    for kind in range(len(parts)):
        ids = [i for rank_parts in everything for i in rank_parts[kind][0]]
        vectors = [rank_parts[kind][1] for rank_parts in everything if len(rank_parts[kind][0])]
        joined.append((ids, np.concatenate(vectors) if vectors else np.zeros((0, 0), "float32")))
    return joined


__all__ = ["ExactEvaluator"]
