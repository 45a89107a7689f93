"""Concurrent requests answered by one searcher call: a short collection window.

Each request puts ``(query, mode, k)`` on a queue and waits. A single worker takes the first
waiting request, collects whatever else arrives within ``window`` seconds (up to
``max_batch``), and answers them all from one call in a worker thread: the queries that need
the dense side are encoded together, those that need BM25 are scored together, and hybrid
requests fuse the two rankings the batch already computed, and the requests that ask for
reranking have the pairs of all their first-stage top ``rerank_depth`` scored together by the
cross-encoder, in the same call. Throughput therefore rises with the number of clients, while a
lone request waits at most ``window``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass

from densekit.search.folder import Searchers

Ranking = dict[str, float]


@dataclass(frozen=True)
class Request:
    query: str
    mode: str
    k: int
    rerank: bool = False


def rank_batch(searchers: Searchers, requests: Sequence[Request]) -> list[Ranking]:
    """Each request's ranking, from one encoder call and one BM25 call for the whole batch (and
    one cross-encoder pass over the pairs of every request that asks for reranking)."""
    ids = [str(i) for i in range(len(requests))]
    reranked = [i for i, r in zip(ids, requests, strict=True) if r.rerank]
    if reranked and searchers.reranker is None:
        raise ValueError("reranking asked for, but no reranker is loaded")
    # a reranked request needs its mode's first-stage top ``rerank_depth``
    depth = max(searchers.rerank_depth if r.rerank else r.k for r in requests)
    hybrid = searchers.get("hybrid")
    # hybrid requests fuse each side's top ``hybrid.depth``; without one, the top ``depth`` do
    wants_hybrid = any(r.mode == "hybrid" for r in requests)
    candidates = max(depth, hybrid.depth) if wants_hybrid else depth
    rankings: dict[str, dict[str, Ranking]] = {}
    for side in ("bm25", "dense"):
        chosen = [i for i, r in zip(ids, requests, strict=True) if r.mode in (side, "hybrid")]
        if chosen:
            texts = [requests[int(i)].query for i in chosen]
            rankings[side] = searchers.get(side).batch_rank(texts, chosen, candidates)
    hybrids = [i for i, r in zip(ids, requests, strict=True) if r.mode == "hybrid"]
    if hybrids:
        rankings["hybrid"] = hybrid.fuse(hybrids, rankings["bm25"], rankings["dense"], depth)
    answers = {i: rankings[r.mode][i] for i, r in zip(ids, requests, strict=True)}
    if reranked:
        # every mode's RerankingSearcher shares the reranker, depth and corpus: one call
        reranking = searchers.reranked(requests[int(reranked[0])].mode)
        first = {i: dict(list(answers[i].items())[: reranking.depth]) for i in reranked}
        texts = {i: requests[int(i)].query for i in reranked}
        answers.update(reranking.rerank(first, texts, reranked, depth))
    return [dict(list(answers[i].items())[: r.k]) for i, r in zip(ids, requests, strict=True)]


class Batcher:
    """Collects requests for ``window`` seconds and ranks them in one worker-thread call."""

    def __init__(self, searchers: Searchers, window: float = 0.002, max_batch: int = 64) -> None:
        self.searchers, self.window, self.max_batch = searchers, window, max_batch
        self.queue: asyncio.Queue[tuple[Request, asyncio.Future]] | None = None
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.task: asyncio.Task | None = None
        self.batches = 0

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._work())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def rank(self, request: Request) -> Ranking:
        """This request's ranking (answered with whatever else arrived meanwhile)."""
        if self.queue is None:
            await self.start()
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((request, future))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.window
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            requests = [request for request, _ in batch]
            try:
                results = await loop.run_in_executor(
                    self.pool, rank_batch, self.searchers, requests
                )
            except Exception as exc:  # the worker must outlive a failed batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            for (_, future), ranking in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(ranking)
