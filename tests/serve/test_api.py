"""The HTTP API in-process (httpx through FastAPI's TestClient): answers equal the searchers',
judged hits and nDCG@10 equal pytrec_eval's, concurrent requests are batched, and every bad
request is a 4xx with a JSON error — never a 500."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import pytrec_eval

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from densekit.search import load_searchers
from densekit.serve.app import create_app


@pytest.fixture(scope="module")
def searchers(searcher_dir):
    return load_searchers(searcher_dir)


@pytest.fixture(scope="module")
def client(searchers):
    with TestClient(create_app(searchers)) as test_client:
        yield test_client


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_get_search_equals_the_searcher(client, searchers, mode):
    query = "vitamin D and bone density"
    body = client.get("/search", params={"q": query, "k": 7, "mode": mode}).json()
    expected = searchers.get(mode).search(query, k=7)
    assert body["query"] == query and body["mode"] == mode and body["k"] == 7
    assert [h["docid"] for h in body["hits"]] == [h.docid for h in expected]
    assert [h["rank"] for h in body["hits"]] == list(range(1, 8))
    assert body["hits"][0]["title"] == expected[0].title
    assert body["hits"][0]["text"] == expected[0].text
    assert body["hits"][0]["score"] == pytest.approx(expected[0].score, rel=1e-5)
    assert "ndcg_at_10" not in body  # not a dev query


def test_dev_queries_carry_judgments_and_ndcg(client, searchers):
    listed = client.get("/dev_queries").json()
    assert {q["qid"] for q in listed} == set(searchers.dev_qrels)
    for entry in listed[:4]:
        grades = searchers.dev_qrels[entry["qid"]]
        for mode in ("bm25", "hybrid"):
            body = client.get("/search", params={"q": entry["text"], "k": 5, "mode": mode}).json()
            assert body["qid"] == entry["qid"] and body["judged"] == len(grades)
            for hit in body["hits"]:
                assert hit["relevance"] == grades.get(hit["docid"], 0)
            ranking = searchers.get(mode).search(entry["text"], k=10)
            run = {entry["qid"]: {h.docid: h.score for h in ranking}}
            oracle = pytrec_eval.RelevanceEvaluator({entry["qid"]: grades}, {"ndcg_cut.10"})
            expected = oracle.evaluate(run)[entry["qid"]]["ndcg_cut_10"]
            assert body["ndcg_at_10"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    by_qid = client.get("/search", params={"q": "anything", "qid": listed[0]["qid"]}).json()
    assert by_qid["qid"] == listed[0]["qid"]


def test_post_answers_a_list(client, searchers):
    queries = ["insulin resistance", "T cell vaccine response", "insulin resistance"]
    body = client.post("/search", json={"queries": queries, "k": 3, "mode": "dense"}).json()
    assert [b["query"] for b in body] == queries
    for answer, query in zip(body, queries, strict=True):
        assert [h["docid"] for h in answer["hits"]] == [
            h.docid for h in searchers.get("dense").search(query, k=3)
        ]


def test_health_info_docs_and_page(client, searchers):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["corpus_size"] == 100 and info["dimension"] == 384
    assert info["hybrid_weight"] == 0.3 and info["modes"] == ["bm25", "dense", "hybrid"]
    assert "/search" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


BAD_GETS = [
    ({"q": ""}, 400),
    ({"q": "   "}, 400),
    ({"q": "x" * 5000}, 413),
    ({"q": "x", "k": 0}, 400),
    ({"q": "x", "k": 1001}, 400),
    ({"q": "x", "k": -3}, 400),
    ({"q": "x", "k": "ten"}, 422),
    ({"q": "x", "mode": "sparse"}, 400),
    ({"q": "x", "qid": "no-such-query"}, 404),
    ({}, 422),
]


@pytest.mark.parametrize(("params", "status"), BAD_GETS)
def test_bad_gets_are_4xx_with_a_json_error(client, params, status):
    response = client.get("/search", params=params)
    assert response.status_code == status
    assert isinstance(response.json()["error"], str) and "Traceback" not in response.text


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 422),
        (b'{"queries": []}', 422),
        (b'{"queries": "one string"}', 422),
        (b'{"queries": [""]}', 400),
        (b'{"queries": ["ok"], "k": 0}', 400),
        (b'{"queries": ["ok"], "mode": "x"}', 400),
        (b"[1, 2]", 422),
        (b"", 422),
    ],
)
def test_bad_posts_are_4xx_with_a_json_error(client, content, status):
    headers = {"content-type": "application/json"}
    response = client.post("/search", content=content, headers=headers)
    assert response.status_code == status and "error" in response.json()


def test_unknown_paths_and_methods_are_json_4xx(client):
    assert client.get("/nothing").status_code == 404 and "error" in client.get("/nothing").json()
    assert client.delete("/search").status_code == 405


def test_concurrent_requests_share_encoder_calls(searchers):
    """32 requests at once are answered in fewer batches than requests, each as if alone."""
    app = create_app(searchers, window=0.02)
    queries = [f"protein kinase signalling {i}" for i in range(32)]

    async def run() -> tuple[list[dict], int]:
        transport = httpx.ASGITransport(app=app)
        batcher = app.state.batcher
        await batcher.start()
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                answers = await asyncio.gather(
                    *(http.get("/search", params={"q": q, "k": 5}) for q in queries)
                )
            return [a.json() for a in answers], batcher.batches
        finally:
            await batcher.stop()

    answers, batches = asyncio.run(run())
    assert batches < len(queries)
    for query, answer in zip(queries, answers, strict=True):
        alone = searchers.get("hybrid").search(query, k=5)
        assert [h["docid"] for h in answer["hits"]] == [h.docid for h in alone]


def test_an_int8_backend_serves_the_same_documents(searcher_dir, searchers, tmp_path):
    """The ONNX Runtime int8 query encoder (exported into tmp_path, not beside the model)
    behind the same app: the dense top 5 keeps most of torch fp32's documents."""
    pytest.importorskip("onnxruntime")
    int8 = load_searchers(searcher_dir, "onnx", "int8", export_dir=str(tmp_path / "export"))
    assert int8.info["backend"] == "onnx-int8"
    with TestClient(create_app(int8)) as test_client:
        for query in ("vitamin D and bone density", "insulin resistance in obesity"):
            body = test_client.get("/search", params={"q": query, "k": 5, "mode": "dense"}).json()
            torch_top = {h.docid for h in searchers.get("dense").search(query, k=5)}
            assert len(torch_top & {h["docid"] for h in body["hits"]}) >= 4


def test_fields_keep_only_the_keys_asked_for(client, searchers):
    query = "vitamin D and bone density"
    full = client.get("/search", params={"q": query, "k": 5, "mode": "dense"}).json()
    assert list(full["hits"][0]) == ["docid", "score", "rank", "title", "text"]
    slim = client.get(
        "/search", params={"q": query, "k": 5, "mode": "dense", "fields": "score,docid"}
    ).json()
    assert [list(hit) for hit in slim["hits"]] == [["docid", "score"]] * 5
    assert slim["hits"] == [{"docid": h["docid"], "score": h["score"]} for h in full["hits"]]
    texts = client.get("/search", params={"q": query, "k": 5, "fields": "text"}).json()
    expected = searchers.get("hybrid").search(query, k=5)
    assert texts["hits"] == [{"text": hit.text} for hit in expected]
    body = client.post(
        "/search", json={"queries": [query], "k": 5, "mode": "dense", "fields": ["docid", "rank"]}
    ).json()
    assert body[0]["hits"] == [{"docid": h["docid"], "rank": h["rank"]} for h in full["hits"]]
    # a dev query keeps its judgments whatever the fields
    dev = client.get("/dev_queries").json()[0]
    judged = client.get("/search", params={"q": dev["text"], "k": 3, "fields": "docid"}).json()
    assert all(set(hit) == {"docid", "relevance"} for hit in judged["hits"])
    assert "ndcg_at_10" in judged


@pytest.mark.parametrize("fields", ["docid,bogus", "", " , ", "Title"])
def test_bad_fields_are_a_400_with_a_json_error(client, fields):
    response = client.get("/search", params={"q": "insulin", "fields": fields})
    assert response.status_code == 400
    assert "field" in response.json()["error"] and "Traceback" not in response.text
    posted = client.post("/search", json={"queries": ["insulin"], "fields": fields.split(",")})
    assert posted.status_code == 400 and "field" in posted.json()["error"]
    assert client.post("/search", json={"queries": ["x"], "fields": "docid"}).status_code == 422
