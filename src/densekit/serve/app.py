"""The HTTP API over a set of searchers, and the page at ``/``.

``GET /search?q=&k=&mode=&rerank=&fields=`` answers ``{"query", "mode", "k", "rerank", "hits":
[{"docid", "score", "rank", "title", "text"}]}``; ``fields=docid,score`` (any of those five,
comma-separated) keeps only those keys in each hit, and without ``title``/``text`` the server
reads no document from the corpus. ``POST /search`` takes ``{"queries": [...], "k", "mode",
"rerank", "fields"}`` and answers a list of those. Answers are serialized with orjson when it is
installed (the ``serve`` extra), else with the standard library. With ``rerank=true`` (when the server has a reranker,
see ``/info``) the hits are the cross-encoder's top k of the mode's top ``rerank_depth``. When the query is one of the folder's dev queries (by ``qid=`` or by its exact
text), the answer also carries ``qid``, each hit's judged ``relevance`` and the query's
``ndcg@10`` for that ranking. ``GET /health``, ``GET /info`` and ``GET /dev_queries`` describe
the server; ``/openapi.json`` and ``/docs`` document the API. Bad requests get a 4xx with a JSON
``{"error": ...}``; the server only reads its model, index and corpus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from densekit.evaluation.metrics import evaluate
from densekit.search.folder import MODES, Searchers
from densekit.serve.batching import Batcher
from densekit.serve.batching import Request as RankRequest

logger = logging.getLogger("densekit.serve")
MAX_QUERY_CHARS = 2048
MAX_K = 1000
MAX_QUERIES = 256
STATIC = resources.files("densekit.serve") / "static"
FIELDS = ("docid", "score", "rank", "title", "text")  # a hit's keys, in this order

try:  # orjson is ~30x faster than json.dumps on a page of hits with their abstracts
    import orjson
except ImportError:  # pragma: no cover - the serve extra installs it
    orjson = None


class FastJSONResponse(JSONResponse):
    """``JSONResponse`` rendered by orjson when it is installed (the same JSON text, compact)."""

    def render(self, content: Any) -> bytes:
        if orjson is None:
            return super().render(content)
        return orjson.dumps(content)


class BadRequest(Exception):
    """A request the API refuses: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class SearchBody(BaseModel):
    """``POST /search``: several queries at once."""

    queries: list[str] = Field(..., description="query texts", min_length=1)
    k: int = Field(10, description="hits per query")
    mode: str = Field("hybrid", description="bm25, dense or hybrid")
    rerank: bool = Field(False, description="rerank the mode's top hits with the cross-encoder")
    fields: list[str] | None = Field(
        None, description=f"keys kept in each hit, any of {', '.join(FIELDS)} (default: all)"
    )


def _check(query: str, k: int, mode: str, rerank: bool = False, can_rerank: bool = True) -> str:
    text = query.strip()
    if not text:
        raise BadRequest("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"the query has {len(query)} characters; at most {MAX_QUERY_CHARS}", 413)
    if not 1 <= k <= MAX_K:
        raise BadRequest(f"k must lie in 1..{MAX_K}, got {k}")
    if mode not in MODES:
        raise BadRequest(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if rerank and not can_rerank:
        raise BadRequest("rerank=true, but this server has no reranker (densekit serve --reranker)")
    return text


def _fields(fields: str | list[str] | None) -> tuple[str, ...]:
    """The hit keys asked for (``"docid,score"`` or a list), in :data:`FIELDS` order."""
    if fields is None:
        return FIELDS
    names = fields.split(",") if isinstance(fields, str) else list(fields)
    names = [name.strip() for name in names if name.strip()]
    if not names:
        raise BadRequest(f"fields is empty; give some of {', '.join(FIELDS)}")
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(map(repr, unknown))}; expected some of "
                         f"{', '.join(FIELDS)}")  # fmt: skip
    return tuple(name for name in FIELDS if name in names)


def _error_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(searchers: Searchers, window: float = 0.002, max_batch: int = 64) -> FastAPI:
    """The FastAPI app over ``searchers``; requests are batched within ``window`` seconds."""
    batcher = Batcher(searchers, window, max_batch)
    text_to_qid = {text: qid for qid, text in searchers.dev_queries.items()}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="densekit search",
        description="BM25, dense and hybrid search over one corpus, optionally reranked by a "
        "cross-encoder. Each hit has docid, score, rank, title and text; `fields=docid,score` "
        '(GET) or `"fields": ["docid", "score"]` (POST) keeps only the keys named, '
        "which saves reading and sending the documents' text when only the ranking is needed.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _error_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def failure(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("search failed")
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    can_rerank = searchers.reranker is not None

    async def answer(
        query: str,
        k: int,
        mode: str,
        qid: str | None,
        rerank: bool = False,
        fields: tuple[str, ...] = FIELDS,
    ) -> dict[str, Any]:
        text = _check(query, k, mode, rerank, can_rerank)
        if qid is not None and qid not in searchers.dev_qrels:
            raise BadRequest(f"qid {qid!r} is not a dev query of this folder", 404)
        qid = qid or text_to_qid.get(query) or text_to_qid.get(text)
        judged = qid is not None and qid in searchers.dev_qrels
        depth = max(k, 10) if judged else k
        documents = k if "title" in fields or "text" in fields else 0
        found = await batcher.answer(RankRequest(text, mode, depth, rerank, documents))
        ranking = found.ranking
        top = list(ranking.items())[:k]
        docs = found.documents or [("", "")] * len(top)
        if fields == FIELDS:
            hits = [
                {"docid": d, "score": float(s), "rank": r, "title": t, "text": x}
                for r, ((d, s), (t, x)) in enumerate(zip(top, docs, strict=True), start=1)
            ]
        else:
            hits = [
                {f: v for f, v in zip(FIELDS, (d, float(s), r, t, x), strict=True) if f in fields}
                for r, ((d, s), (t, x)) in enumerate(zip(top, docs, strict=True), start=1)
            ]
        result: dict[str, Any] = {"query": query, "mode": mode, "k": k, "rerank": rerank}
        result["hits"] = hits
        if judged:
            grades = searchers.dev_qrels[qid]
            for hit, (docid, _) in zip(hits, top, strict=True):
                hit["relevance"] = int(grades.get(docid, 0))
            per_query, _ = evaluate({qid: ranking}, {qid: grades}, ["ndcg@10"])
            result.update(qid=qid, ndcg_at_10=per_query[qid]["ndcg@10"], judged=len(grades))
        return result

    @app.get("/search", summary="search one query")
    async def search_get(
        q: Annotated[str, Query(description="the query text")],
        k: Annotated[int, Query(description=f"hits to return (1..{MAX_K})")] = 10,
        mode: Annotated[str, Query(description="bm25, dense or hybrid")] = "hybrid",
        qid: Annotated[str | None, Query(description="a dev query id (judged hits)")] = None,
        rerank: Annotated[
            bool, Query(description="rerank the mode's top rerank_depth with the cross-encoder")
        ] = False,
        fields: Annotated[
            str | None,
            Query(
                description="comma-separated keys kept in each hit, any of "
                f"{','.join(FIELDS)} (default: all). Without title and text the server reads "
                "no document and the answer is a few hundred bytes instead of ~12 kB for 10 "
                "hits, e.g. fields=docid,score"
            ),
        ] = None,
    ) -> JSONResponse:
        # a Response, not a dict: FastAPI then skips validating and re-encoding every hit
        return FastJSONResponse(await answer(q, k, mode, qid, rerank, _fields(fields)))

    @app.post("/search", summary="search several queries")
    async def search_post(body: SearchBody) -> JSONResponse:
        if len(body.queries) > MAX_QUERIES:
            raise BadRequest(f"{len(body.queries)} queries in one request; at most {MAX_QUERIES}")
        fields = _fields(body.fields)
        for query in body.queries:
            _check(query, body.k, body.mode, body.rerank, can_rerank)
        answers = await asyncio.gather(
            *(answer(q, body.k, body.mode, None, body.rerank, fields) for q in body.queries)
        )
        return FastJSONResponse(list(answers))

    @app.get("/health", summary="liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info", summary="what is served")
    async def info() -> dict[str, Any]:
        return {
            **searchers.info,
            "modes": list(MODES),
            "rerank": can_rerank,
            "dev_queries": len(searchers.dev_queries),
            "max_k": MAX_K,
        }

    @app.get("/dev_queries", summary="the dev split's queries, to click through")
    async def dev_queries() -> list[dict[str, Any]]:
        return [
            {
                "qid": qid,
                "text": text,
                "relevant": sum(g > 0 for g in searchers.dev_qrels[qid].values()),
            }
            for qid, text in searchers.dev_queries.items()
            if qid in searchers.dev_qrels
        ]

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
