"""Reranking behind the API: a searcher folder naming a cross-encoder (a tiny random BERT with
one output) serves ``rerank=true``, whose hits equal ``RerankingSearcher(mode's searcher,
reranker, depth).search`` for every mode, batched or alone; /info says what is loaded; asking
to rerank without a reranker is a 400 with a JSON error; a real ``densekit serve --reranker``
answers the same."""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import pytest
import torch

pytest.importorskip("fastapi")
from conftest import serving
from fastapi.testclient import TestClient

from densekit.modeling.reranker import CrossEncoderReranker, RerankerConfig
from densekit.search import RerankingSearcher, load_searchers
from densekit.search.folder import MANIFEST, write_searcher_folder
from densekit.serve.app import create_app

DEPTH = 20
QUERIES = ["vitamin D and bone density", "insulin resistance in obesity", "T cell vaccines"]


@pytest.fixture(scope="module")
def reranker_dir(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-reranker") / "reranker"
    torch.manual_seed(0)
    CrossEncoderReranker.from_backbone(tiny_model, RerankerConfig(max_len=96)).save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def reranked_dir(searcher_dir, reranker_dir, tmp_path_factory):
    """A copy of the searcher folder with the reranker inside it, named by the manifest."""
    folder = tmp_path_factory.mktemp("reranked") / "searcher"
    shutil.copytree(searcher_dir, folder)
    shutil.copytree(reranker_dir, folder / "reranker")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["model"] = str((searcher_dir / manifest["model"]).resolve())
    manifest.update(reranker="reranker", rerank_depth=DEPTH)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def searchers(reranked_dir):
    # fp32: the exactness checks below compare scores of differently padded batches
    return load_searchers(reranked_dir, reranker_precision="fp32")


@pytest.fixture(scope="module")
def client(searchers):
    with TestClient(create_app(searchers)) as test_client:
        yield test_client


def _expected(searchers, mode, query, k):
    alone = RerankingSearcher(searchers.get(mode), searchers.reranker, DEPTH)
    return alone.search(query, k=k)


def _same(hits, expected):
    assert [h["docid"] for h in hits] == [h.docid for h in expected]
    # scored in another batch (other padding): last-bit differences
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected], rel=1e-4)
    assert [h["rank"] for h in hits] == list(range(1, len(expected) + 1))


def test_the_folder_loads_its_reranker(searchers, reranked_dir):
    assert searchers.rerank_depth == DEPTH and searchers.reranker is not None
    assert set(searchers.reranking) == {"bm25", "dense", "hybrid"}
    assert searchers.reranked("dense").first_stage is searchers.get("dense")
    assert searchers.info["reranker"] == str((reranked_dir / "reranker").resolve())


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_rerank_true_equals_the_reranking_searcher(client, searchers, mode):
    for query in QUERIES[:2]:
        body = client.get("/search", params={"q": query, "k": 7, "mode": mode, "rerank": "true"})
        body = body.json()
        assert body["rerank"] is True and body["mode"] == mode
        _same(body["hits"], _expected(searchers, mode, query, 7))
        plain = client.get("/search", params={"q": query, "k": 7, "mode": mode}).json()
        assert plain["rerank"] is False
        assert [h["docid"] for h in plain["hits"]] == [
            h.docid for h in searchers.get(mode).search(query, k=7)
        ]


def test_post_reranks_and_k_past_the_depth_gives_the_reranked_depth(client, searchers):
    body = client.post(
        "/search", json={"queries": QUERIES, "k": 50, "mode": "hybrid", "rerank": True}
    ).json()
    for answer, query in zip(body, QUERIES, strict=True):
        assert answer["rerank"] is True and len(answer["hits"]) == DEPTH
        _same(answer["hits"], _expected(searchers, "hybrid", query, 50))


def test_dev_queries_reranked_carry_ndcg_of_the_reranked_list(client, searchers):
    qid, text = next(iter(searchers.dev_queries.items()))
    body = client.get("/search", params={"q": text, "k": 5, "rerank": "1"}).json()
    assert body["qid"] == qid and "ndcg_at_10" in body
    _same(body["hits"], _expected(searchers, "hybrid", text, 5))


def test_a_batch_mixing_modes_and_reranking_answers_as_alone(searchers):
    """Concurrent requests (plain and reranked, every mode) share batches and answer as alone."""
    app = create_app(searchers, window=0.05)
    cases = [(q, m, r) for q in QUERIES for m in ("bm25", "dense", "hybrid") for r in (0, 1)]

    async def run():
        batcher = app.state.batcher
        await batcher.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                answers = await asyncio.gather(
                    *(
                        http.get("/search", params={"q": q, "k": 5, "mode": m, "rerank": r})
                        for q, m, r in cases
                    )
                )
            return [a.json() for a in answers], batcher.batches
        finally:
            await batcher.stop()

    answers, batches = asyncio.run(run())
    assert batches < len(cases)
    for (query, mode, rerank), answer in zip(cases, answers, strict=True):
        if rerank:
            _same(answer["hits"], _expected(searchers, mode, query, 5))
        else:
            expected = searchers.get(mode).search(query, k=5)
            assert [h["docid"] for h in answer["hits"]] == [h.docid for h in expected]


def test_info_says_what_is_loaded(client, reranked_dir):
    info = client.get("/info").json()
    assert info["rerank"] is True and info["rerank_depth"] == DEPTH
    assert info["reranker"] == str((reranked_dir / "reranker").resolve())
    assert info["reranker_backend"] == "torch"


def test_rerank_without_a_reranker_is_a_400(searcher_dir):
    plain = load_searchers(searcher_dir)
    with TestClient(create_app(plain)) as http:
        info = http.get("/info").json()
        assert info["rerank"] is False and info["reranker"] is None
        for response in (
            http.get("/search", params={"q": "insulin", "rerank": "true"}),
            http.post("/search", json={"queries": ["insulin"], "rerank": True}),
        ):
            assert response.status_code == 400
            assert "no reranker" in response.json()["error"]
        assert http.get("/search", params={"q": "insulin", "rerank": "false"}).status_code == 200
        bad = http.get("/search", params={"q": "insulin", "rerank": "maybe"})
        assert bad.status_code == 422 and "error" in bad.json()


def test_write_searcher_folder_names_the_reranker_relatively(searchers, reranker_dir, tmp_path):
    import datasets
    import faiss
    import numpy as np

    from densekit.retrieval.bm25 import BM25Index
    from densekit.search.folder import find_manifest

    shutil.copytree(reranker_dir, tmp_path / "reranker")
    index = faiss.IndexFlatIP(4)
    index.add(np.eye(4, dtype=np.float32))
    bm25 = BM25Index.build(
        datasets.Dataset.from_dict(
            {
                "docid": list("abcd"),
                "title": [""] * 4,
                "text": ["kinase study", "insulin study", "virus spread", "neuron growth"],
            }
        )
    )
    folder = write_searcher_folder(
        tmp_path / "searcher", tmp_path / "model", tmp_path / "corpus.jsonl",
        (list("abcd"), index), bm25, 0.5, 10, reranker=tmp_path / "reranker", rerank_depth=30,
    )  # fmt: skip
    manifest = json.loads((find_manifest(folder) / MANIFEST).read_text())
    assert manifest["reranker"] == "../reranker" and manifest["rerank_depth"] == 30


def test_a_real_server_with_the_reranker_flag(searcher_dir, searchers, reranker_dir):
    """``densekit serve folder --reranker DIR --rerank_depth 20``: the same reranked hits."""
    flags = ("--reranker", str(reranker_dir), "--rerank_depth", str(DEPTH), "--threads", "1",
             "--reranker_precision", "fp32")  # fmt: skip
    with serving(searcher_dir, *flags) as url, httpx.Client(base_url=url, timeout=60) as http:
        info = http.get("/info").json()
        assert info["rerank"] is True and info["rerank_depth"] == DEPTH
        for mode in ("dense", "hybrid"):
            params = {"q": QUERIES[0], "k": 5, "mode": mode, "rerank": "true"}
            _same(http.get("/search", params=params).json()["hits"],
                  _expected(searchers, mode, QUERIES[0], 5))  # fmt: skip


def test_an_exported_reranker_serves(reranked_dir, tmp_path):
    """``reranker_backend="onnx"``: exported into tmp_path, named in /info, answers rerank=true."""
    pytest.importorskip("onnxruntime")
    onnx = load_searchers(reranked_dir, reranker_backend="onnx", export_dir=str(tmp_path))
    with TestClient(create_app(onnx)) as http:
        assert http.get("/info").json()["reranker_backend"] == "onnx-fp32"
        body = http.get("/search", params={"q": QUERIES[0], "k": 5, "rerank": "true"}).json()
        assert body["rerank"] is True and len(body["hits"]) == 5


def test_the_reranker_precision_follows_the_cpu_and_the_flag(reranked_dir, monkeypatch):
    """``auto`` scores under bf16 autocast where the CPU computes bf16 natively, fp32 elsewhere;
    ``/info`` says which; an exported reranker has no torch precision to set."""
    from densekit import precision

    monkeypatch.setenv("DENSEKIT_PRECISION", "auto")
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "native_bf16", lambda device="cpu", n=native: (n, "test"))
        loaded = load_searchers(reranked_dir)
        assert loaded.info["reranker_precision"] == expected
        assert loaded.reranker.bf16 is (expected == "bf16")
    assert load_searchers(reranked_dir, reranker_precision="fp32").reranker.bf16 is False


def test_bf16_for_an_exported_reranker_is_refused(reranked_dir, capsys):
    from densekit.commands import run_guarded
    from densekit.commands.serve import main

    code = run_guarded(main, [str(reranked_dir), "--reranker_backend", "onnx",
                              "--reranker_precision", "bf16"])  # fmt: skip
    assert code == 2
    assert "--reranker_precision bf16 is for --reranker_backend torch" in capsys.readouterr().err
