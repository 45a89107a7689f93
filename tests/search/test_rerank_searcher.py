"""RerankingSearcher: its ranking equals ``densekit rerank`` over the first stage's run."""

from __future__ import annotations

import pytest
import torch

from densekit.commands.rerank import main as rerank_main
from densekit.data.runs import read_run, write_run
from densekit.modeling.reranker import CrossEncoderReranker, RerankerConfig
from densekit.search import CorpusStore, RankingSearcher, RerankingSearcher
from densekit.search.hits import Hit

DOCS = {
    f"d{i}": f"passage {i} on {['kinase', 'insulin', 'virus', 'neuron'][i % 4]}" for i in range(10)
}
QUERIES = ["kinase inhibitors", "insulin resistance", "virus spread"]
IDS = ["a", "b", "c"]


class FixedRanking(RankingSearcher):
    """A first stage with a known ranking: docs in a rotating order, scores descending."""

    def __init__(self, corpus: CorpusStore) -> None:
        self.corpus = corpus

    def batch_rank(self, queries, ids, depth):
        return {
            qid: {f"d{(n * 3 + i) % 10}": float(100 - i) for i in range(depth)}
            for n, qid in enumerate(ids)
        }


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory, write_jsonl):
    folder = tmp_path_factory.mktemp("rerank-searcher")
    corpus = write_jsonl(folder / "corpus.jsonl", [{"_id": d, "text": t} for d, t in DOCS.items()])
    queries = write_jsonl(
        folder / "queries.jsonl", [{"_id": q, "text": t} for q, t in zip(IDS, QUERIES, strict=True)]
    )
    torch.manual_seed(0)
    reranker = CrossEncoderReranker.from_backbone(tiny_model, RerankerConfig(max_len=64))
    reranker.save_pretrained(folder / "model")
    return folder, corpus, queries, CrossEncoderReranker.from_pretrained(folder / "model")


def test_reranking_searcher_equals_rerank_command(setup):
    folder, corpus_path, queries_path, reranker = setup
    store = CorpusStore.open(corpus_path)
    first = FixedRanking(store)
    searcher = RerankingSearcher(first, reranker, depth=6)
    ranked = searcher.batch_rank(QUERIES, IDS, 4)
    write_run(folder / "first.trec", first.batch_rank(QUERIES, IDS, 6))
    argv = ["--model", str(folder / "model"), "--run", str(folder / "first.trec"),
            "--corpus", str(corpus_path), "--queries", str(queries_path), "--depth", "6",
            "--save_ranking_to", str(folder / "reranked.trec")]  # fmt: skip
    assert rerank_main(argv) == 0
    expected = read_run(folder / "reranked.trec")
    for qid in IDS:
        assert list(ranked[qid]) == list(expected[qid])[:4]
        assert list(ranked[qid].values()) == pytest.approx(
            list(expected[qid].values())[:4], rel=1e-6
        )

    hits = searcher.batch_search(QUERIES, IDS, k=3)
    assert [h.docid for h in hits["a"]] == list(expected["a"])[:3]
    assert isinstance(hits["a"][0], Hit) and hits["a"][0].text == DOCS[hits["a"][0].docid]


def test_needs_a_corpus(setup):
    _, _, _, reranker = setup

    class NoCorpus(RankingSearcher):
        pass

    with pytest.raises(ValueError, match="corpus"):
        RerankingSearcher(NoCorpus(), reranker)
