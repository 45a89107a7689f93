"""Concurrent requests answered by one searcher call: a short collection window.

Each request puts ``(query, mode, k)`` on a queue and waits. A single worker takes the
waiting requests, collects whatever else arrives within ``window`` seconds (up to
``max_batch``), and answers them all from one call in a worker thread: the queries that need
the dense side are encoded together, those that need BM25 are scored together, and hybrid
requests fuse the two rankings the batch already computed, and the requests that ask for
reranking have the pairs of all their first-stage top ``rerank_depth`` scored together by the
cross-encoder, in the same call; the same call also reads the title and text of every
request's top ``documents`` hits from the corpus at once (one Arrow read per batch rather than
one per hit). Throughput therefore rises with the number of clients, while a lone request waits
at most ``window``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass

from densekit.search.folder import Searchers

Ranking = dict[str, float]
Document = tuple[str, str]  # (title, text)


@dataclass(frozen=True)
class Request:
    query: str
    mode: str
    k: int
    rerank: bool = False
    documents: int = 0  # the top hits whose title and text the answer needs (0: none)


@dataclass(frozen=True)
class Answer:
    """A request's ranking, and the (title, text) of its top ``Request.documents`` hits."""

    ranking: Ranking
    documents: list[Document]


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


def answer_batch(searchers: Searchers, requests: Sequence[Request]) -> list[Answer]:
    """:func:`rank_batch`, plus the documents each request asks for, read in one go."""
    rankings = rank_batch(searchers, requests)
    tops = [list(ranking)[: r.documents] for ranking, r in zip(rankings, requests, strict=True)]
    wanted = [d for top in tops for d in top]
    documents = searchers.corpus.documents(wanted) if searchers.corpus else [("", "")] * len(wanted)
    answers, at = [], 0
    for ranking, top in zip(rankings, tops, strict=True):
        answers.append(Answer(ranking, documents[at : at + len(top)]))
        at += len(top)
    return answers


class Batcher:
    """Collects requests for ``window`` seconds and answers them in one worker-thread call.

    Collecting costs one timer per batch (not one task per request); requests that arrive while
    a batch is being ranked wait for the next one, so under load batches form by themselves.
    """

    def __init__(self, searchers: Searchers, window: float = 0.002, max_batch: int = 64) -> None:
        self.searchers, self.window, self.max_batch = searchers, window, max_batch
        self.pending: collections.deque[tuple[Request, asyncio.Future]] = collections.deque()
        self.ready: asyncio.Future | None = None  # woken by a request / a full batch
        self.waiting_first = False  # the worker waits for any request (else: the window's end)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.task: asyncio.Task | None = None
        self.batches = 0
        self.answered = 0

    async def start(self) -> None:
        self.pending.clear()
        self.task = asyncio.create_task(self._work())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def rank(self, request: Request) -> Ranking:
        """This request's ranking (answered with whatever else arrived meanwhile)."""
        return (await self.answer(request)).ranking

    async def answer(self, request: Request) -> Answer:
        """This request's ranking and documents (with whatever else arrived meanwhile)."""
        if self.task is None:
            await self.start()
        future = asyncio.get_running_loop().create_future()
        self.pending.append((request, future))
        ready = self.ready
        wake = self.waiting_first or len(self.pending) >= self.max_batch
        if ready is not None and not ready.done() and wake:
            ready.set_result(None)
        return await future

    async def _wait(self, first: bool, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        self.ready, self.waiting_first = loop.create_future(), first
        timer = loop.call_later(timeout, _wake, self.ready) if timeout is not None else None
        try:
            await self.ready
        finally:
            if timer is not None:
                timer.cancel()
            self.ready, self.waiting_first = None, False

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.pending:
                await self._wait(True, None)
            if self.window > 0 and len(self.pending) < self.max_batch:
                await self._wait(False, self.window)
            batch = [self.pending.popleft() for _ in range(min(self.max_batch, len(self.pending)))]
            batch = [(request, future) for request, future in batch if not future.done()]
            if not batch:
                continue
            requests = [request for request, _ in batch]
            try:
                results = await loop.run_in_executor(
                    self.pool, answer_batch, self.searchers, requests
                )
            except Exception as exc:  # the worker must outlive a failed batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.answered += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
