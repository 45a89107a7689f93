"""The recipe end to end on a tiny synthetic BEIR folder, with and without dev/test files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TOPICS

from densekit.data.runs import read_run
from densekit.evaluation.metrics import evaluate
from densekit.modeling.encoder import DenseEncoder
from densekit.recipes import fine_tuning, model_index, pipeline
from densekit.recipes.config import RecipeConfig
from densekit.recipes.data import load_data
from densekit.search import load_searcher

# "one": the fixture averages 2+ positives per query, where auto would multiply the epochs
SMALL = {"epochs": 1, "batch_size": 8, "passage_max_len": 32, "negatives": 3, "mine_from": 0,
         "train_positives": "one"}  # fmt: skip


def _config(folder, out, tiny_model, **extra):
    return RecipeConfig(
        data_dir=str(folder), output_dir=str(out), model=tiny_model, **{**SMALL, **extra}
    )


def test_recipe_with_dev_and_test(beir_folder, tiny_model, tmp_path, monkeypatch):
    events = []
    real_train, real_load = fine_tuning.train, pipeline.load_qrels
    monkeypatch.setattr(
        fine_tuning, "train", lambda *a: [real_train(*a), events.append("trained")][0]
    )
    monkeypatch.setattr(
        pipeline,
        "load_qrels",
        lambda path: (events.append(f"read {path.name}"), real_load(path))[1],
    )
    out = tmp_path / "out"
    results = pipeline.run_recipe(_config(beir_folder(), out, tiny_model))
    assert list(results) == [
        "bm25", "zero-shot", "fine-tuned", "bm25+zero-shot", "bm25+fine-tuned"
    ]  # fmt: skip
    # the test qrels are read once, after the model is trained and every dev choice is made
    assert events == ["trained", "read test.tsv"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["dev_queries"] == 8 and list(saved["test_results"]) == list(results)
    for hybrid in ("bm25+zero-shot", "bm25+fine-tuned"):  # test reuses the weights tuned on dev
        assert saved["test_results"][hybrid]["bm25_weight"] == results[hybrid]["bm25_weight"]
    for split in ("dev", "test"):
        for system in results:
            run = (out / "runs" / f"{system}.{split}.trec").read_text().split()
            assert run and {q for q in run[::6]} <= {f"q{i}" for i in range(24, 40)}
    assert "## test" in (out / "results.md").read_text()
    for split in ("dev", "test"):  # every pair of the five systems tested, Holm over the ten
        pairs = saved[f"{split}_significance"]
        assert len(pairs) == 10 and all(p["holm_p"] >= p["randomization_p"] for p in pairs)
    assert "beats (nDCG@10, Holm p < 0.05)" in (out / "results.md").read_text()
    recorded = json.loads((out / "recipe_config.json").read_text())
    assert recorded["batch_size"] == 8 and recorded["model"] == tiny_model
    DenseEncoder.from_pretrained(str(out / "model"))
    train_rows = [json.loads(line) for line in (out / "train.mined.jsonl").open()]
    assert {r["query_id"] for r in train_rows} == {f"q{i}" for i in range(24)}
    # the searcher folder reproduces the dev row of the fused system with its dev-tuned weight
    hybrid = load_searcher(out)
    assert hybrid.weight == results["bm25+fine-tuned"]["bm25_weight"]
    dev_run = read_run(out / "runs" / "bm25+fine-tuned.dev.trec")
    queries = {f"q{i}": f"what about {TOPICS[i % 8]} {i}" for i in range(24, 32)}
    found = hybrid.batch_search(list(queries.values()), list(queries), k=10)
    for qid, hits in found.items():
        assert [h.docid for h in hits] == list(dev_run[qid])[:10], qid


def test_recipe_without_dev_or_test(beir_folder, tiny_model, tmp_path):
    out = tmp_path / "out"
    results = pipeline.run_recipe(_config(beir_folder(dev=False, test=False), out, tiny_model))
    saved = json.loads((out / "results.json").read_text())
    assert saved["test_results"] is None and saved["dev_queries"] == 8
    assert all(0.0 <= v["ndcg@10"] <= 1.0 for v in results.values())
    assert not list((out / "runs").glob("*.test.trec"))


def test_recipe_command_on_a_folder(beir_folder, tiny_model, tmp_path, capsys):
    from densekit.commands import main as cli

    argv = ["recipe", "--data_dir", str(beir_folder(test=False)), "--output_dir",
            str(tmp_path / "o"), "--model", tiny_model, "--batch_size", "8", "--negatives", "3",
            "--passage_max_len", "32", "--mine_from", "0"]  # fmt: skip
    assert cli(argv) == 0
    assert "| fine-tuned |" in capsys.readouterr().out
    missing = ["recipe", "--data_dir", str(tmp_path / "none"), "--output_dir", str(tmp_path / "n")]
    assert cli(missing) == 2
    assert "is missing" in capsys.readouterr().err


@pytest.mark.parametrize("quick", [True])
def test_quick_shrinks_in_the_config(quick):
    config = RecipeConfig()
    config.shrink()
    assert (config.max_train_queries, config.max_dev_queries, config.max_corpus) == (256, 100, 1500)


def test_recipe_keeps_the_best_dev_checkpoint(beir_folder, tiny_model, tmp_path, monkeypatch):
    """Among the evaluations, the best is kept (the zero-shot fallback, tested below, is held
    off: a tiny random model may well never beat its own start)."""
    monkeypatch.setattr(pipeline, "beats_zero_shot", lambda *a: True)
    out = tmp_path / "out"
    config = _config(
        beir_folder(test=False),
        out,
        tiny_model,
        epochs=3,
        learning_rate=5e-3,
        eval_strategy="epoch",
        train_positives="all",
    )
    results = pipeline.run_recipe(config)
    kept = json.loads((out / "results.json").read_text())["kept_checkpoint"]
    steps = [step for step, _ in kept["evaluations"]]
    judged = [
        sum(r > 0 for r in qrels.values()) for qrels in load_data(config).train_qrels.values()
    ]
    pairs = sum(min(k, config.max_positives) for k in judged)  # at most 4 per query
    per_epoch = pairs // 8  # one example per (query, positive) pair, batch 8, last one dropped
    assert pairs > 24  # some of the 24 train queries have several positives
    assert steps == [per_epoch, 2 * per_epoch, 3 * per_epoch]  # one evaluation per epoch
    best_step, best = max(kept["evaluations"], key=lambda e: (e[1], -e[0]))
    assert kept["checkpoint"] == f"checkpoint-{best_step}" and kept["best"] == best
    assert results["fine-tuned"]["ndcg@10"] == pytest.approx(best, rel=1e-9)  # its run is reused
    # the saved model scores, through a separate encode + search, what training logged
    data = load_data(config)
    run = pipeline.model_run(
        config, str(out / "model"), data.corpus, data.queries_of(data.dev_qrels)
    )
    assert evaluate(run, data.dev_qrels, ["ndcg@10"])[1]["ndcg@10"] == pytest.approx(best, rel=1e-6)
    assert f"kept checkpoint-{best_step}" in (out / "results.md").read_text()


def test_recipe_checks_its_evaluation_schedule(tmp_path):
    from densekit.errors import ConfigError

    for bad in ({"eval_strategy": "sometimes"}, {"eval_strategy": "steps"}):
        with pytest.raises(ConfigError, match="eval_st"):
            pipeline.run_recipe(RecipeConfig(output_dir=str(tmp_path / "o"), **bad))
    assert not (tmp_path / "o").exists()


def test_mining_run_picks_dense_bm25_or_their_equal_weight_fusion():
    dense = {"q": {"a": 0.9, "b": 0.5, "c": 0.1}}
    bm25 = {"q": {"c": 12.0, "b": 4.0, "d": 2.0}}
    assert pipeline.mining_run(RecipeConfig(mine_source="dense"), dense, bm25) is dense
    assert pipeline.mining_run(RecipeConfig(mine_source="bm25"), dense, bm25) is bm25
    fused = pipeline.mining_run(RecipeConfig(mine_source="hybrid"), dense, bm25)["q"]
    # by hand: minmax per run (missing -> 0), then 0.5 each
    expected = {"a": 0.5, "b": 0.5 * 0.5 + 0.5 * 0.2, "c": 0.5, "d": 0.0}
    assert fused == pytest.approx(expected)


def test_recipe_mines_hybrid_negatives_with_the_symmetric_loss(
    beir_folder, tiny_model, tmp_path, monkeypatch
):
    seen = {}
    real_train, real_mine = fine_tuning.train, pipeline.mine

    def spy_train(model_args, *rest):
        seen["symmetric"] = model_args.symmetric_loss
        return real_train(model_args, *rest)

    def spy_mine(config, data, run, out):
        seen["run"] = run
        return real_mine(config, data, run, out)

    monkeypatch.setattr(fine_tuning, "train", spy_train)
    monkeypatch.setattr(pipeline, "mine", spy_mine)
    out = tmp_path / "out"
    config = _config(
        beir_folder(test=False), out, tiny_model, mine_source="hybrid", symmetric_loss=True
    )
    pipeline.run_recipe(config)
    assert seen["symmetric"] is True
    recorded = json.loads((out / "recipe_config.json").read_text())
    assert recorded["mine_source"] == "hybrid" and recorded["symmetric_loss"] is True
    # negatives came from the fusion: per query, equal-weight minmax scores, so the best
    # passage scores between 0.5 (top of one run) and 1 (top of both); BM25 covers train queries
    data = load_data(config)
    assert set(data.train_qrels) <= set(seen["run"])
    for hits in seen["run"].values():
        assert 0.5 <= max(hits.values()) <= 1.0 and min(hits.values()) >= 0.0


def test_unknown_mining_source_is_refused(tmp_path):
    from densekit.errors import ConfigError

    with pytest.raises(ConfigError, match="--mine_source"):
        pipeline.run_recipe(RecipeConfig(output_dir=str(tmp_path / "o"), mine_source="bm26"))
    assert not (tmp_path / "o").exists()


def _visible(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_recipe_refuses_a_folder_of_the_users_files(beir_folder, tiny_model, tmp_path):
    from densekit.errors import ConfigError

    out = tmp_path / "mine"
    (out / "model").mkdir(parents=True)
    (out / "model" / "weights.bin").write_text("the user's")
    (out / "results.md").write_text("the user's results")
    with pytest.raises(ConfigError, match="did not write"):
        pipeline.run_recipe(_config(beir_folder(test=False), out, tiny_model))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "model", "model/weights.bin", "results.md"
    ]  # fmt: skip


def test_dev_split_equal_to_train_is_refused_before_writing(beir_folder, tiny_model, tmp_path):
    from densekit.errors import DataError

    folder = beir_folder(test=False)
    (folder / "qrels" / "dev.tsv").write_text((folder / "qrels" / "train.tsv").read_text())
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"dev\.tsv"):
        pipeline.run_recipe(_config(folder, out, tiny_model))
    assert not out.exists()


def _comparable(out):
    saved = json.loads((out / "results.json").read_text())
    saved.pop("stage_seconds")
    for table in ("results", "test_results"):
        for row in (saved.get(table) or {}).values():
            row.pop("seconds")
    return saved


def test_killed_recipe_resumes_from_its_last_stage_to_the_same_results(
    beir_folder, tiny_model, tmp_path, monkeypatch
):
    folder = beir_folder(test=False)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    pipeline.run_recipe(_config(folder, whole, tiny_model))
    real_fine_tune = pipeline.fine_tune

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if killed while training

    monkeypatch.setattr(pipeline, "fine_tune", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_recipe(_config(folder, resumed, tiny_model))
    assert _visible(resumed) == []  # nothing that looks like an output yet
    redone = []
    monkeypatch.setattr(pipeline, "fine_tune", real_fine_tune)
    for name in ("bm25_index_run", "model_run", "mine"):
        real = getattr(pipeline, name)
        monkeypatch.setattr(
            pipeline, name, lambda *a, _n=name, _r=real, **k: redone.append(_n) or _r(*a, **k)
        )
    real_index = pipeline.ModelIndex

    def recorded_index(config, model, corpus):
        if model == tiny_model:  # the base model: the zero-shot stage
            redone.append("zero-shot encode")
        return real_index(config, model, corpus)

    monkeypatch.setattr(pipeline, "ModelIndex", recorded_index)
    pipeline.run_recipe(_config(folder, resumed, tiny_model))
    assert redone == []  # BM25, zero-shot and mining came from the killed run
    assert _comparable(resumed) == _comparable(whole)
    assert _visible(resumed) == _visible(whole)
    # a finished recipe is replaced only when asked, and what the user added stays
    (resumed / "notes.txt").write_text("mine")
    from densekit.errors import ConfigError

    with pytest.raises(ConfigError, match="--overwrite"):
        pipeline.run_recipe(_config(folder, resumed, tiny_model))
    pipeline.run_recipe(_config(folder, resumed, tiny_model), overwrite=True)
    assert (resumed / "notes.txt").read_text() == "mine"
    assert _comparable(resumed) == _comparable(whole)


def test_each_model_encodes_the_corpus_once(beir_folder, tiny_model, tmp_path, monkeypatch):
    """With a test split, the zero-shot and fine-tuned corpora are encoded once each and their
    indexes searched for dev, train and test queries alike (and for the searcher folder)."""
    real, folder = model_index.index_corpus, beir_folder()
    for kept_tuned, encodes in ((True, 2), (False, 1)):  # the zero-shot model kept: one model
        encoded = []
        monkeypatch.setattr(
            model_index, "index_corpus", lambda *a, _e=encoded, **k: _e.append(1) or real(*a, **k)
        )
        monkeypatch.setattr(pipeline, "beats_zero_shot", lambda *a, _k=kept_tuned: _k)
        pipeline.run_recipe(_config(folder, tmp_path / str(kept_tuned), tiny_model))
        assert len(encoded) == encodes


def test_recipe_keeps_the_zero_shot_model_when_no_evaluation_beats_it(
    beir_folder, tiny_model, tmp_path, monkeypatch
):
    """The training length chosen on dev may be zero steps: then the base model's files are the
    recipe's model, the fine-tuned row is the zero-shot row and the table says why."""
    seen = []

    def never(kept, zero_shot):
        seen.append((kept["best"], zero_shot))
        return False

    monkeypatch.setattr(pipeline, "beats_zero_shot", never)
    out = tmp_path / "out"
    config = _config(beir_folder(test=False), out, tiny_model, epochs=2, eval_strategy="epoch")
    results = pipeline.run_recipe(config)
    assert len(seen) == 1 and seen[0][0] is not None
    assert seen[0][1] == results["zero-shot"]["ndcg@10"]
    for metric in ("ndcg@10", "mrr@10", "recall@100"):
        assert results["fine-tuned"][metric] == results["zero-shot"][metric]
    for name in ("config.json", "model.safetensors"):
        assert (out / "model" / name).read_bytes() == (Path(tiny_model) / name).read_bytes()
    kept = json.loads((out / "results.json").read_text())["kept_checkpoint"]
    assert kept["checkpoint"] == "zero-shot" and len(kept["evaluations"]) == 2
    assert "no evaluation beat it on dev" in (out / "results.md").read_text()


@pytest.mark.parametrize(("best", "want"), [(None, True), (0.5, True), (0.4, False), (0.3, False)])
def test_beats_zero_shot_is_strict(best, want):
    assert pipeline.beats_zero_shot({"best": best}, 0.4) is want


@pytest.mark.parametrize(("train_seed", "want"), [(None, 2026), (7, 7)])
def test_train_seed_seeds_fine_tuning_alone(monkeypatch, tmp_path, train_seed, want):
    """--train_seed reaches the trainer; the dev split and mining keep --seed."""
    seen = {}
    monkeypatch.setattr(fine_tuning, "train", lambda m, d, t, e: seen.setdefault("seed", t.seed))
    monkeypatch.setattr(fine_tuning, "kept_checkpoint", lambda trainer: {})
    config = RecipeConfig(output_dir=str(tmp_path), train_seed=train_seed)
    pipeline.fine_tune(config, "base", _mined(tmp_path / "train.jsonl", [1]), tmp_path / "model")
    assert seen["seed"] == want and config.seed == 2026


def _mined(path: Path, positives_per_query: list[int]) -> Path:
    """A recipe-mined file (Tevatron v1 rows) whose queries have the given positive counts."""
    rows = [
        {
            "query_id": str(i),
            "query": f"query {i}",
            "positive_passages": [
                {"docid": f"{i}.{j}", "title": "", "text": "t"} for j in range(k)
            ],
            "negative_passages": [{"docid": f"n{i}", "title": "", "text": "n"}],
        }
        for i, k in enumerate(positives_per_query)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_auto_multiplies_the_epochs_where_queries_average_two_or_more_positives(tmp_path):
    """``auto`` samples one positive per epoch; from a mean of 2 judged positives per training
    query it multiplies the epochs by the rounded mean, at most the cap (SciFact's 1.1: x1);
    an explicit setting is kept whatever the data, unmultiplied."""
    few = _mined(tmp_path / "few.jsonl", [1, 1, 1, 2])  # mean 1.25
    some = _mined(tmp_path / "some.jsonl", [1, 2, 2, 4])  # mean 2.25
    many = _mined(tmp_path / "many.jsonl", [6, 9])  # mean 7.5
    assert fine_tuning.training_positives("auto", few, 4) == ("one", 1, 1.25)
    assert fine_tuning.training_positives("auto", some, 4) == ("one", 2, 2.25)
    assert fine_tuning.training_positives("auto", many, 4) == ("one", 4, 7.5)
    assert fine_tuning.training_positives("one", many, 4) == ("one", 1, 7.5)
    assert fine_tuning.training_positives("all", few, 4) == ("all", 1, 1.25)


@pytest.mark.parametrize(
    ("setting", "counts", "want"),
    [
        ("auto", [1, 1, 2], ("one", None, 2.0)),
        ("auto", [2, 4], ("one", None, 3 * 2.0)),
        ("all", [6, 9], ("all", 3, 2.0)),
    ],
)
def test_fine_tune_hands_the_resolved_positives_epochs_and_cap_to_training(
    tmp_path, monkeypatch, setting, counts, want
):
    """What ``auto`` decides reaches the trainer's arguments: the sampling, the cap (only
    with ``all``) and the epochs (2 configured; x3 for a mean of 3 judged positives)."""
    seen = {}

    class Stop(Exception):
        pass

    def fake_train(model_args, data_args, training_args, evaluator):
        seen["got"] = (
            data_args.train_positives,
            data_args.max_positives,
            training_args.num_train_epochs,
        )
        raise Stop

    monkeypatch.setattr(fine_tuning, "train", fake_train)
    config = RecipeConfig(train_positives=setting, max_positives=3, epochs=2.0)
    with pytest.raises(Stop):
        fine_tuning.fine_tune(config, "base", _mined(tmp_path / "m.jsonl", counts), tmp_path / "m")
    assert seen["got"] == want


def test_recipe_refuses_unknown_positive_settings(tmp_path):
    from densekit.errors import ConfigError

    for bad, match in (({"train_positives": "some"}, "one, all or auto"),
                       ({"max_positives": 0}, "max_positives")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            pipeline.run_recipe(RecipeConfig(output_dir=str(tmp_path / "o"), **bad))
    assert not (tmp_path / "o").exists()
