"""The recipe's opt-in distillation round on the tiny synthetic BEIR folder (tiny models)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from test_rerank import RERANK, _config

from densekit.data.readers import load_train
from densekit.errors import ConfigError
from densekit.evaluation.metrics import evaluate
from densekit.modeling.reranker import CrossEncoderReranker, RerankerConfig
from densekit.recipes import distill, fine_tuning, pipeline
from densekit.recipes.config import RecipeConfig
from densekit.recipes.data import load_data
from densekit.search.folder import load_searchers

DISTILL = {**RERANK, "distill": True, "distill_group_size": 3, "distill_learning_rate": 1e-3}


def _pair_alone(reranker: CrossEncoderReranker, query: str, title: str, text: str) -> float:
    """One pair tokenized and scored by itself (no batch, no padding): the independent logit."""
    first, second = reranker.format_pair(query, title, text)
    batch = reranker.tokenizer(first, second, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        return float(reranker.eval()(**batch)[0])


def test_scored_file_holds_each_pairs_logit_and_keeps_grades(tmp_path, tiny_model, write_jsonl):
    torch.manual_seed(0)
    reranker = CrossEncoderReranker.from_backbone(tiny_model, RerankerConfig(max_len=64))
    rows = [
        {"query_id": "a", "query": "kinase enzymes", "pos_grades": [2, 1],
         "positive_passages": [{"docid": "1", "title": "Kinase", "text": "adds phosphate"},
                               {"docid": "2", "title": "", "text": "an enzyme"}],
         "negative_passages": [{"docid": "3", "title": "Weather", "text": "rain " * 40}]},
        {"query_id": "b", "query": "insulin", "positive_passages": [
            {"docid": "4", "title": "Pancreas", "text": "secretes insulin"}],
         "negative_passages": []},
    ]  # fmt: skip
    out = tmp_path / "scored.jsonl"
    pairs = distill.score_training_file(reranker, write_jsonl(tmp_path / "t.jsonl", rows), out, 2)
    assert pairs == 4
    scored = list(load_train(out))
    assert [r["query_id"] for r in scored] == ["a", "b"]
    assert scored[0]["pos_grades"] == [2.0, 1.0] and scored[1]["pos_grades"] == []
    for row, source in zip(scored, rows, strict=True):
        for kind, key in (("pos", "positive_passages"), ("neg", "negative_passages")):
            assert [p["docid"] for p in row[kind]] == [p["docid"] for p in source[key]]
            want = [_pair_alone(reranker, row["query"], p["title"], p["text"]) for p in row[kind]]
            assert row[f"{kind}_scores"] == pytest.approx(want, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("verdict", [True, False])
def test_distillation_round_is_kept_only_when_dev_says_so(
    beir_folder, tiny_model, tmp_path, monkeypatch, verdict
):
    """The second round trains on the reranker's scores with the distill loss from the first
    round's model; kept, it is the dense model everywhere (rows, searcher, test); dropped, no
    trace of it is left but the record of its dev score."""
    calls = []
    real_fine_tune = fine_tuning.fine_tune

    def spy(config, base, train_file, model_dir, evaluator=None, **overrides):
        lines = train_file.read_text().splitlines()
        calls.append((base, [json.loads(line) for line in lines], overrides))
        return real_fine_tune(config, base, train_file, model_dir, evaluator, **overrides)

    monkeypatch.setattr(distill, "fine_tune", spy)
    monkeypatch.setattr(distill, "beats_zero_shot", lambda kept, first: verdict)
    out = tmp_path / "out"
    config = _config(beir_folder(), out, tiny_model, **DISTILL)
    results = pipeline.run_recipe(config)
    (base, rows, overrides), = calls  # fmt: skip
    assert base.endswith("model") and overrides["loss"] == "distill"
    assert overrides["group_size"] == 3 and overrides["learning_rate"] == 1e-3
    assert all(len(r["pos_scores"]) == len(r["positive_passages"]) for r in rows)
    assert all(len(r["neg_scores"]) == len(r["negative_passages"]) for r in rows)
    saved = json.loads((out / "results.json").read_text())
    summary = saved["distill"]
    assert summary["kept"] is verdict and summary["pairs_scored"] > 0
    assert f"({'kept' if verdict else 'dropped'}" in (out / "results.md").read_text()
    assert (out / "distilled").is_dir() is verdict
    assert not (out / "train.distill.jsonl").exists()
    manifest = json.loads((out / "searcher" / "searcher.json").read_text())
    assert manifest["model"] == ("../distilled" if verdict else "../model")
    data = load_data(config)
    dev_queries = data.queries_of(data.dev_qrels)
    model = out / ("distilled" if verdict else "model")
    run = pipeline.model_run(config, str(model), data.corpus, dev_queries)  # encoded anew
    ndcg = evaluate(run, data.dev_qrels, ["ndcg@10"])[1]["ndcg@10"]
    assert results["fine-tuned"]["ndcg@10"] == pytest.approx(ndcg, rel=1e-6)
    if verdict:
        assert summary["second_round"] == pytest.approx(ndcg, rel=1e-6)
    else:
        assert summary["first_round"] == pytest.approx(ndcg, rel=1e-6)
    searchers = load_searchers(out)
    assert searchers.reranker is not None
    assert list(saved["test_results"]) == list(results)


def test_real_verdict_compares_the_two_rounds_on_dev(beir_folder, tiny_model, tmp_path):
    out = tmp_path / "out"
    pipeline.run_recipe(_config(beir_folder(test=False), out, tiny_model, **DISTILL))
    summary = json.loads((out / "results.json").read_text())["distill"]
    assert summary["kept"] is (summary["second_round"] > summary["first_round"])
    assert summary["metric"] == "ndcg@10"


def test_distill_checks_and_keys(tmp_path):
    with pytest.raises(ConfigError, match="needs --rerank true"):
        RecipeConfig(distill=True).check()
    with pytest.raises(ConfigError, match="--distill_group_size 1"):
        RecipeConfig(rerank=True, distill=True, distill_group_size=1).check()
    base = RecipeConfig(data_dir=str(tmp_path), model="m", rerank=True, distill=True)
    other = dataclasses.replace(base, distill_epochs=2.0)
    keys, changed = pipeline.stage_keys(base, "m"), pipeline.stage_keys(other, "m")
    for stage in ("bm25", "zero-shot", "mine", "fine-tune", "reranker"):
        assert keys[stage] == changed[stage]
    assert keys["distill"] != changed["distill"] and keys["rerank"] != changed["rerank"]
    off = pipeline.stage_keys(dataclasses.replace(base, distill=False), "m")
    assert off["fine-tune"] == keys["fine-tune"] and off["rerank"] != keys["rerank"]


def test_killed_after_a_kept_round_resumes_without_retraining(
    beir_folder, tiny_model, tmp_path, monkeypatch
):
    """Killed while reranking, after a kept round was recorded: the rerun reuses the round
    (no second distillation) and serves it; a rerun with --distill false then leaves no
    ``distilled/`` and serves the first round."""
    from densekit.recipes import rerank

    rounds = []
    real_fine_tune = fine_tuning.fine_tune
    monkeypatch.setattr(
        distill, "fine_tune", lambda *a, **k: rounds.append(1) or real_fine_tune(*a, **k)
    )
    monkeypatch.setattr(distill, "beats_zero_shot", lambda kept, first: True)
    real_rerank = rerank.rerank

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rerank, "rerank", killed)
    folder, out = beir_folder(test=False), tmp_path / "out"
    config = _config(folder, out, tiny_model, **DISTILL)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_recipe(config)
    assert rounds == [1] and not (out / "distilled").exists()  # not moved out yet
    monkeypatch.setattr(rerank, "rerank", real_rerank)
    results = pipeline.run_recipe(config)
    assert rounds == [1]  # reused
    summary = json.loads((out / "results.json").read_text())["distill"]
    assert summary["kept"] and results["fine-tuned"]["ndcg@10"] == pytest.approx(
        summary["second_round"], rel=1e-9
    )
    assert json.loads((out / "searcher" / "searcher.json").read_text())["model"] == "../distilled"
    again = pipeline.run_recipe(dataclasses.replace(config, distill=False), overwrite=True)
    assert not (out / "distilled").exists() and rounds == [1]
    assert json.loads((out / "searcher" / "searcher.json").read_text())["model"] == "../model"
    assert again["fine-tuned"]["ndcg@10"] == pytest.approx(summary["first_round"], rel=1e-6)
