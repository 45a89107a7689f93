"""The recipe's opt-in rerank stage on the tiny synthetic BEIR folder (tiny models)."""

from __future__ import annotations

import dataclasses
import json
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import TOPICS

from densekit.commands.recipe import build_parser
from densekit.data.runs import read_run
from densekit.errors import ConfigError
from densekit.modeling.reranker import CrossEncoderReranker
from densekit.recipes import pipeline, rerank
from densekit.recipes.config import RecipeConfig, build_config
from densekit.search.folder import load_searchers

# "one": the fixture averages 2+ positives per query, where auto would multiply the epochs
SMALL = {"epochs": 1, "batch_size": 8, "passage_max_len": 32, "negatives": 3, "mine_from": 0,
         "train_positives": "one"}  # fmt: skip
RERANK = {
    "rerank": True,
    "rerank_depth": 10,
    "rerank_group_size": 4,
    "rerank_batch_size": 8,
    "rerank_max_len": 64,
}
ROWS = ["bm25", "zero-shot", "fine-tuned", "bm25+zero-shot", "bm25+fine-tuned"]


def _config(folder, out, tiny_model, **extra):
    return RecipeConfig(
        data_dir=str(folder), output_dir=str(out), model=tiny_model, **{**SMALL, **extra}
    )


def _spy_training(monkeypatch, events):
    real = rerank.train_reranker

    def spy(run, evaluator=None):  # what it trains on, read while the work folder holds it
        lines = Path(run.dataset_path).read_text().splitlines()
        events.append(("trained reranker", run, [json.loads(line) for line in lines], evaluator))
        return real(run, evaluator=evaluator)

    monkeypatch.setattr(rerank, "train_reranker", spy)


def test_rerank_stage_rows_model_and_searcher(beir_folder, tiny_model, tmp_path, monkeypatch):
    events = []
    _spy_training(monkeypatch, events)
    real_load = pipeline.load_qrels
    monkeypatch.setattr(
        pipeline,
        "load_qrels",
        lambda path: (events.append(f"read {path.name}"), real_load(path))[1],
    )
    out = tmp_path / "out"
    # fp32: the rows are compared with pairs scored alone in fp32 below (bf16: the command test)
    config = _config(beir_folder(), out, tiny_model, precision="fp32", **RERANK)
    results = pipeline.run_recipe(config)
    assert list(results) == [*ROWS, "rerank", "rerank+hybrid"]
    # the reranker is trained (once) before the test qrels are read
    assert [e if isinstance(e, str) else e[0] for e in events] == [
        "trained reranker",
        "read test.tsv",
    ]
    # its training data: the mined file of the train queries, no dev or test query
    _, run, rows, evaluator = events[0]
    assert run.model_name_or_path == tiny_model and run.loss == "listwise"
    # batches of 8 queries as 2 accumulated chunks of 4 (--rerank_chunk_size): bounded memory
    assert run.training["per_device_train_batch_size"] == 4
    assert run.training["gradient_accumulation_steps"] == 2
    # its training length was chosen on dev: at most 3 evaluations of the top min(10, 30)
    assert evaluator is not None and evaluator.depth == 10
    assert {r["query_id"] for r in rows} == {f"q{i}" for i in range(24)}
    saved = json.loads((out / "results.json").read_text())
    first = saved["rerank"]["first_stage"]
    assert first == max(rerank.FIRST_STAGES, key=lambda s: results[s]["ndcg@10"])
    fused = results["rerank+hybrid"]
    assert 0.0 <= fused["rerank_weight"] <= 1.0 and fused["depth"] == 10
    assert fused["first_stage"] == results["rerank"]["first_stage"] == first
    assert saved["rerank"]["rerank_weight"] == fused["rerank_weight"]
    # the test split reuses the dev choices
    test = saved["test_results"]
    assert list(test) == list(results)
    assert test["rerank+hybrid"]["rerank_weight"] == fused["rerank_weight"]
    assert test["rerank+hybrid"]["depth"] == 10 and test["rerank"]["first_stage"] == first
    for split in ("dev", "test"):  # seven systems: 21 pairs under Holm
        assert len(saved[f"{split}_significance"]) == 21
        for system in ("rerank", "rerank+hybrid"):
            hits = read_run(out / "runs" / f"{system}.{split}.trec")
            assert hits and all(len(h) <= 10 for h in hits.values())
    assert f"top 10 of {first}" in (out / "results.md").read_text()
    training = saved["rerank"]["training"]
    assert training["steps"] == 3 and training["eval_depth"] == 10  # 24 queries / 8
    logged = [(e["step"], e["ndcg@10"]) for e in training["evaluations"]]
    assert 1 <= len(logged) <= 3 and logged[-1][0] == training["steps"]
    best_step, best = max(logged, key=lambda e: e[1])
    assert training["best_step"] == best_step and training["eval_first_stage"] == first
    # the kept model reranks the dev top 10 (the eval depth here) to the best logged nDCG@10
    assert results["rerank"]["ndcg@10"] == pytest.approx(best, rel=1e-4)
    assert not list((out / "reranker").glob("checkpoint-*"))
    # the rerank dev run is the chosen first stage's top 10 scored pair by pair, independently
    reranker = CrossEncoderReranker.from_pretrained(out / "reranker")
    docs = {
        f"d{i}": (f"{TOPICS[i % 8]} study {i}", f"about {TOPICS[i % 8]} {i}") for i in range(80)
    }
    texts = {f"q{i}": f"what about {TOPICS[i % 8]} {i}" for i in range(40)}
    first_run, reranked = (
        read_run(out / "runs" / f"{name}.dev.trec") for name in (first, "rerank")
    )
    assert set(reranked) == set(first_run) == {f"q{i}" for i in range(24, 32)}
    for qid, hits in first_run.items():
        candidates = list(hits)[:10]
        alone = {d: float(reranker.score([texts[qid]], [docs[d]])[0]) for d in candidates}
        assert set(reranked[qid]) == set(candidates)
        assert reranked[qid] == pytest.approx(alone, abs=1e-4)
        # best first by the pair-alone scores; near-ties (batched vs alone kernels) may swap
        order = [alone[d] for d in reranked[qid]]
        assert all(a >= b - 1e-4 for a, b in pairwise(order))
    # the searcher folder names the reranker: the served mode reranked gives the same top 10
    searchers = load_searchers(out)
    assert searchers.rerank_depth == 10 and searchers.reranker is not None
    manifest = json.loads((out / "searcher" / "searcher.json").read_text())
    assert manifest["reranker"] == "../reranker"
    served = searchers.reranked(rerank.FIRST_STAGES[first])
    dev = {q: texts[q] for q in sorted(first_run)}
    found = served.batch_search(list(dev.values()), list(dev), k=10)
    for qid, hits in found.items():
        assert [h.docid for h in hits] == list(reranked[qid]), qid


def test_killed_rerank_resumes_and_rerank_off_adds_nothing(
    beir_folder, tiny_model, tmp_path, monkeypatch
):
    folder, out = beir_folder(test=False), tmp_path / "out"
    events = []
    _spy_training(monkeypatch, events)
    real_rerank = rerank.rerank

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if killed while reranking the dev queries

    monkeypatch.setattr(rerank, "rerank", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_recipe(_config(folder, out, tiny_model, **RERANK))
    assert len(events) == 1 and not (out / "reranker").exists()
    monkeypatch.setattr(rerank, "rerank", real_rerank)
    results = pipeline.run_recipe(_config(folder, out, tiny_model, **RERANK))
    assert len(events) == 1  # the trained reranker of the killed run was reused
    assert list(results)[-2:] == ["rerank", "rerank+hybrid"]
    assert (out / "reranker").is_dir()
    # rerank off (the default) over the same folder: no training, no rows, no reranker left
    assert RecipeConfig().rerank is False

    def refused(*args, **kwargs):
        raise AssertionError("rerank=False must not touch the reranker")

    monkeypatch.setattr(rerank, "train_reranker", refused)
    monkeypatch.setattr(CrossEncoderReranker, "from_pretrained", refused)
    results = pipeline.run_recipe(_config(folder, out, tiny_model), overwrite=True)
    assert list(results) == ROWS
    saved = json.loads((out / "results.json").read_text())
    assert "rerank" not in saved and len(saved["dev_significance"]) == 10
    assert not (out / "reranker").exists() and not list((out / "runs").glob("rerank*"))
    assert "reranker" not in json.loads((out / "searcher" / "searcher.json").read_text())
    assert load_searchers(out).reranker is None


def test_rerank_flags_and_checks(tmp_path):
    config = build_config(build_parser().parse_args(["--rerank", "true", "--rerank_depth", "50"]))
    assert config.rerank is True and config.rerank_depth == 50
    (tmp_path / "r.json").write_text('{"rerank": "yes", "rerank_epochs": 2}')
    config = build_config(build_parser().parse_args(["--config", str(tmp_path / "r.json")]))
    assert config.rerank is True and config.rerank_epochs == 2.0
    text = build_parser().format_help()
    assert "opt-in" in text and "--rerank_depth" in text
    for bad in ({"rerank_depth": 0}, {"rerank_group_size": 1}, {"rerank_max_len": 1}):
        with pytest.raises(ConfigError, match="--rerank_"):
            pipeline.run_recipe(RecipeConfig(output_dir=str(tmp_path / "o"), rerank=True, **bad))
        RecipeConfig(**bad).check()  # reranking off: its settings are not read
    assert not (tmp_path / "o").exists()


def test_rerank_settings_leave_the_other_stages_keys_alone(tmp_path):
    base = RecipeConfig(data_dir=str(tmp_path), model="m")
    other = RecipeConfig(data_dir=str(tmp_path), model="m", rerank=True, rerank_epochs=3.0)
    keys, changed = pipeline.stage_keys(base, "m"), pipeline.stage_keys(other, "m")
    for stage in ("bm25", "zero-shot", "mine", "fine-tune"):
        assert keys[stage] == changed[stage]
    assert keys["reranker"] != changed["reranker"] and keys["rerank"] != changed["rerank"]
    on = dataclasses.replace(base, rerank=True)
    chunked = dataclasses.replace(on, rerank_chunk_size=2)  # memory only: nothing retrains
    assert pipeline.stage_keys(on, "m") == pipeline.stage_keys(chunked, "m")


def test_rerank_model_is_what_the_cross_encoder_starts_from(
    beir_folder, tiny_model, tmp_path, monkeypatch
):
    """``--rerank_model`` (a cross-encoder checkpoint) replaces ``--model`` as the reranker's
    start, and only the reranker's stage keys depend on it."""
    seen = []

    class Stop(Exception):
        pass

    def record(config, folder, keys, dev, corpus, queries, base, *rest):
        seen.append(base)
        raise Stop

    monkeypatch.setattr(rerank, "train_stage", record)
    config = _config(beir_folder(), tmp_path / "out", tiny_model, rerank_model="/ce", **RERANK)
    with pytest.raises(Stop):
        pipeline.run_recipe(config)
    assert seen == ["/ce"]
    keys = pipeline.stage_keys(config, tiny_model)
    plain = pipeline.stage_keys(dataclasses.replace(config, rerank_model=None), tiny_model)
    assert keys["fine-tune"] == plain["fine-tune"] and keys["reranker"] != plain["reranker"]


@pytest.mark.parametrize(("batch", "most", "want"), [(16, 4, 4), (12, 5, 4), (7, 4, 1), (3, 8, 3)])
def test_chunk_size_is_the_largest_divisor_not_above_the_cap(batch, most, want):
    assert rerank.chunk_size(batch, most) == want
