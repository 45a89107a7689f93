"""``densekit train-reranker``: a toy task learned in a few steps; data formats; bad input."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch
from conftest import toy_bert

from densekit.commands import run_guarded
from densekit.commands.train_reranker import main
from densekit.data.runs import read_run
from densekit.modeling.reranker import CrossEncoderReranker, RerankerConfig

WORDS = [
    "red",
    "blue",
    "green",
    "black",
    "white",
    "brown",
    "pink",
    "gray",
    "gold",
    "silver",
    "orange",
    "purple",
]
FAST = ["--max_len", "8", "--save_steps", "1000", "--logging_steps", "5", "--seed", "0"]


def match_rows(n: int, seed: int) -> list[dict]:
    """Exact match of a random code: the query is one word, the relevant passage is that word,
    the negatives are other words. Relevance lives only in the query-passage interaction (no
    passage is relevant or not by itself), which the cross-encoder must learn from scratch."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        word, *others = rng.sample(WORDS, 4)
        rows.append({"query_id": f"q{i}", "query": word, "pos": [word], "neg": others})
    return rows


def accuracy(reranker: CrossEncoderReranker, rows: list[dict]) -> float:
    hits = 0
    for row in rows:
        passages = row["pos"] + row["neg"]
        scores = reranker.score([row["query"]] * len(passages), passages, activation=False)
        hits += int(scores.argmax() == 0)
    return hits / len(rows)


def toy_backbone(tokenizer, folder) -> str:
    return toy_bert(tokenizer, folder)


def test_cross_encoder_learns_exact_match_in_a_few_steps(tokenizer, tmp_path, write_jsonl, capsys):
    backbone = toy_backbone(tokenizer, tmp_path / "backbone")
    train = write_jsonl(tmp_path / "train.jsonl", match_rows(64, seed=1))
    held_out = match_rows(40, seed=2)
    torch.manual_seed(0)
    fresh = CrossEncoderReranker.from_backbone(backbone, RerankerConfig(max_len=8))
    before = accuracy(fresh, held_out)
    out = tmp_path / "model"
    argv = ["--model_name_or_path", backbone, "--train_data", str(train), "--output_dir", str(out),
            "--train_group_size", "4", "--per_device_train_batch_size", "16",
            "--learning_rate", "2e-3", "--max_steps", "60", *FAST]  # fmt: skip
    assert main(argv) == 0
    first, last = capsys.readouterr().out.split("loss ")[1].split(" -> ")
    after = accuracy(CrossEncoderReranker.from_pretrained(out), held_out)
    assert float(last.split()[0]) < float(first) - 0.3, (first, last)
    assert after >= 0.7 and after > before + 0.3, (before, after)
    assert (out / "densekit_reranker_config.json").is_file()


def test_tevatron_v2_ids_with_a_corpus_and_bce(tiny_model, tmp_path, write_jsonl):
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl", [{"_id": f"d{i}", "text": w} for i, w in enumerate(WORDS)]
    )
    rows = [
        {"query_id": f"q{i}", "query_text": WORDS[i], "positive_document_ids": [f"d{i}"],
         "negative_document_ids": [f"d{(i + 1) % 12}", f"d{(i + 2) % 12}"]}
        for i in range(8)
    ]  # fmt: skip
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "model"
    argv = ["--model", tiny_model, "--dataset_path", str(train), "--corpus_path", str(corpus),
            "--output_dir", str(out), "--train_group_size", "3", "--loss", "bce",
            "--per_device_train_batch_size", "4", "--max_steps", "2", *FAST]  # fmt: skip
    assert main(argv) == 0
    assert CrossEncoderReranker.from_pretrained(out).settings.activation == "sigmoid"


def test_bf16_trains_on_a_cpu(tiny_model, tmp_path, write_jsonl):
    """``--bf16`` without CUDA: HF's arguments refused it unless told to use the CPU (the
    recipe's rerank stage crashed with precision auto on AVX-512/AMX machines)."""
    rows = [{"query": WORDS[i], "pos": [WORDS[i]], "neg": [WORDS[(i + 1) % 12]]} for i in range(4)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    argv = ["--model", tiny_model, "--dataset_path", str(train), "--output_dir",
            str(tmp_path / "model"), "--train_group_size", "2", "--bf16",
            "--per_device_train_batch_size", "4", "--max_steps", "1", *FAST]  # fmt: skip
    assert main(argv) == 0


def test_distill_from_flagembedding_teacher_scores(tiny_model, tmp_path, write_jsonl):
    rows = [
        {"query": w, "pos": [w], "neg": ["gold", "silver"], "pos_scores": [5.0], "neg_scores": [1.0, 0.5]}
        for w in WORDS[:8]
    ]  # fmt: skip
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    argv = ["--model", tiny_model, "--dataset_path", str(train), "--output_dir", str(tmp_path / "m"),
            "--train_group_size", "3", "--loss", "distill", "--query_max_len", "4",
            "--passage_max_len", "4", "--per_device_train_batch_size", "4", "--max_steps", "2",
            "--save_steps", "1000", "--seed", "0"]  # fmt: skip
    assert main(argv) == 0
    assert CrossEncoderReranker.from_pretrained(tmp_path / "m").settings.max_len == 8


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_data", "no such file"),
        ("distill_without_scores", "pos_scores"),
        ("group_of_one", "--train_group_size"),
        ("both_lengths", "not both"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    tiny_model, tmp_path, write_jsonl, capsys, case, message
):
    train = write_jsonl(tmp_path / "train.jsonl", match_rows(4, seed=3))
    out = tmp_path / "out" / "model"
    argv = ["--model", tiny_model, "--dataset_path", str(train), "--output_dir", str(out),
            "--max_steps", "1"]  # fmt: skip
    if case == "missing_data":
        argv[3] = str(tmp_path / "absent.jsonl")
    elif case == "distill_without_scores":
        argv += ["--loss", "distill"]
    elif case == "group_of_one":
        argv += ["--train_group_size", "1"]
    else:
        argv += ["--max_len", "64", "--query_max_len", "8"]
    capsys.readouterr()
    assert run_guarded(main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert message in err[0], err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------- evaluation, selection, LoRA, bitfit, recompute


def eval_files(tmp_path, write_jsonl):
    """A corpus of the words, one query per word (relevant: the passage of the same word) and
    a first-stage run listing all 12 passages per query in a shuffled order."""
    write_jsonl(
        tmp_path / "corpus.jsonl", [{"_id": f"d{i}", "text": w} for i, w in enumerate(WORDS)]
    )
    write_jsonl(
        tmp_path / "queries.jsonl", [{"_id": f"q{i}", "text": w} for i, w in enumerate(WORDS)]
    )
    (tmp_path / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(12))
    )
    rng = random.Random(5)
    lines = []
    for i in range(12):
        docs = rng.sample(range(12), 12)
        lines += [f"q{i} Q0 d{d} {r + 1} {50 - r} first\n" for r, d in enumerate(docs)]
    (tmp_path / "run.trec").write_text("".join(lines))
    return ["--corpus_path", str(tmp_path / "corpus.jsonl"), "--eval_run",
            str(tmp_path / "run.trec"), "--eval_queries", str(tmp_path / "queries.jsonl"),
            "--eval_qrels", str(tmp_path / "qrels.tsv")]  # fmt: skip


def pytrec_ndcg10(run: dict, qrels_path) -> float:
    """nDCG@10 of ``run`` by pytrec_eval (trec_eval's C code), independent of densekit."""
    import pytrec_eval

    qrels = {}
    for line in qrels_path.read_text().splitlines()[1:]:
        qid, docid, rel = line.split("\t")
        qrels.setdefault(qid, {})[docid] = int(rel)
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return sum(v["ndcg_cut_10"] for v in per_query.values()) / len(per_query)


def test_evaluation_during_training_keeps_the_best_checkpoint(tokenizer, tmp_path, write_jsonl):
    import json

    backbone = toy_backbone(tokenizer, tmp_path / "backbone")
    train = write_jsonl(tmp_path / "train.jsonl", match_rows(64, seed=1))
    out = tmp_path / "model"
    argv = ["--model", backbone, "--train_data", str(train), "--output_dir", str(out),
            "--train_group_size", "4", "--per_device_train_batch_size", "16",
            "--learning_rate", "2e-3", "--max_steps", "24", "--eval_strategy", "steps",
            "--eval_steps", "6", "--load_best_model_at_end", "--eval_depth", "8",
            *eval_files(tmp_path, write_jsonl), *FAST]  # fmt: skip
    assert main(argv) == 0
    state = json.loads((out / "checkpoint-24" / "trainer_state.json").read_text())
    logged = [(e["step"], e["eval_ndcg@10"]) for e in state["log_history"] if "eval_ndcg@10" in e]
    assert [s for s, _ in logged] == [6, 12, 18, 24]
    best_step, best = max(logged, key=lambda e: e[1])  # first of equal maxima, as HF keeps
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")
    # independently: the saved model scores each query's top 8 pair by pair; pytrec_eval
    reranker = CrossEncoderReranker.from_pretrained(out)
    first = read_run(tmp_path / "run.trec")
    run = {}
    for qid, hits in first.items():
        top = sorted(hits, key=lambda d: -hits[d])[:8]
        word = WORDS[int(qid[1:])]
        scores = [
            float(reranker.score([word], [WORDS[int(d[1:])]], activation=False)[0]) for d in top
        ]
        run[qid] = dict(zip(top, scores, strict=True))
    assert pytrec_ndcg10(run, tmp_path / "qrels.tsv") == pytest.approx(best, rel=1e-6)
    # the report and the model card show the curves and the kept metric
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "eval_ndcg@10" in (out / "report.md").read_text()
    card = (out / "README.md").read_text()
    assert "ndcg@10" in card and f"{best:.4f}" in card and f"step {best_step}" in card
    assert "pipeline_tag: text-ranking" in card


def test_in_training_ndcg_equals_pytrec_eval_on_the_reranked_run(tiny_model, tmp_path, write_jsonl):
    from densekit.data.readers import load_corpus
    from densekit.data.train_dataset import Corpus
    from densekit.evaluation.rerank_evaluator import RerankEvaluator
    from densekit.training.reranker_trainer import (
        RerankerRun,
        corpus_documents,
        train_reranker,
    )

    flags = eval_files(tmp_path, write_jsonl)
    corpus = Corpus(load_corpus(tmp_path / "corpus.jsonl"))
    evaluator = RerankEvaluator.from_files(
        str(tmp_path / "run.trec"), str(tmp_path / "queries.jsonl"), str(tmp_path / "qrels.tsv"),
        corpus_documents(corpus), depth=5, keep_runs=True,
    )  # fmt: skip
    assert evaluator.pairs == 12 * 5 and flags
    train = write_jsonl(tmp_path / "train.jsonl", match_rows(16, seed=1))
    run = RerankerRun(
        model_name_or_path=tiny_model, dataset_path=str(train), output_dir=str(tmp_path / "m"),
        train_group_size=4, max_len=8, fine_tune_type="bitfit",
        training={"max_steps": 4, "learning_rate": 1e-2, "per_device_train_batch_size": 8,
                  "eval_strategy": "steps", "eval_steps": 2, "save_strategy": "no", "seed": 0},
    )  # fmt: skip
    trainer = train_reranker(run, evaluator=evaluator)
    logged = [e["eval_ndcg@10"] for e in trainer.state.log_history if "eval_ndcg@10" in e]
    assert len(logged) == len(evaluator.runs) == 2
    for value, reranked in zip(logged, evaluator.runs, strict=True):
        assert all(len(hits) == 5 for hits in reranked.values())
        assert value == pytest.approx(pytrec_ndcg10(reranked, tmp_path / "qrels.tsv"), rel=1e-6)


def test_bitfit_changes_only_biases_and_the_head(tiny_model, tmp_path, write_jsonl):
    from safetensors.torch import load_file

    train = write_jsonl(tmp_path / "train.jsonl", match_rows(16, seed=1))
    out = tmp_path / "m"
    argv = ["--model", tiny_model, "--dataset_path", str(train), "--output_dir", str(out),
            "--train_group_size", "4", "--per_device_train_batch_size", "8", "--max_steps", "3",
            "--learning_rate", "1e-2", "--bitfit", *FAST]  # fmt: skip
    assert main(argv) == 0
    before = load_file(f"{tiny_model}/model.safetensors")
    after = {k.removeprefix("bert."): v for k, v in load_file(out / "model.safetensors").items()}
    moved = {k for k, v in before.items() if not torch.equal(v, after[k])}
    assert moved and all(k.endswith("bias") or k.startswith("pooler.") for k in moved), moved
    assert any(k.endswith("bias") and not k.startswith("pooler.") for k in moved)


@pytest.mark.parametrize("lora", [False, True])
def test_gradient_checkpointing_gives_the_same_training(tiny_model, tmp_path, write_jsonl, lora):
    """Recomputing activations changes memory, not numbers: the same losses (and, with LoRA,
    whose frozen embeddings need inputs that require grads, the adapters do train)."""
    from densekit.training.reranker_trainer import RerankerRun, train_reranker

    train = write_jsonl(tmp_path / "train.jsonl", match_rows(16, seed=1))
    losses, models = [], []
    for checkpointing in (False, True):
        run = RerankerRun(
            model_name_or_path=tiny_model, dataset_path=str(train),
            output_dir=str(tmp_path / f"m{checkpointing}"), train_group_size=4, max_len=8,
            fine_tune_type="lora" if lora else "full",
            training={"max_steps": 3, "learning_rate": 1e-2, "per_device_train_batch_size": 8,
                      "logging_steps": 1, "save_strategy": "no", "seed": 0,
                      "gradient_checkpointing": checkpointing},
        )  # fmt: skip
        trainer = train_reranker(run)
        backbone = trainer.model.model
        assert backbone.is_gradient_checkpointing == checkpointing
        losses.append([e["loss"] for e in trainer.state.log_history if "loss" in e])
        models.append(CrossEncoderReranker.from_pretrained(run.output_dir))
    assert len(losses[0]) == 3 and losses[1] == pytest.approx(losses[0], rel=1e-4)
    assert losses[0][-1] != losses[0][0]  # it trained (LoRA: B moved off zero)
    pairs = (["red", "blue"], ["red", "green"])
    scores = [m.score(*pairs, activation=False) for m in models]
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-3, atol=1e-4 * np.abs(scores[0]).max())


def test_head_learning_rate_moves_only_the_head_at_its_rate(tiny_model, tmp_path, write_jsonl):
    """Adam's first step moves every parameter with a gradient by lr * |g| / (|g| + eps), i.e.
    by its group's rate: the pooler and classifier by --head_learning_rate, the rest by
    --learning_rate (warmup 0, the linear schedule at its peak on step one)."""
    from densekit.training.reranker_trainer import RerankerRun, build_trainer, read_data

    train = write_jsonl(tmp_path / "train.jsonl", match_rows(8, seed=1))
    run = RerankerRun(
        model_name_or_path=tiny_model, dataset_path=str(train), output_dir=str(tmp_path / "m"),
        train_group_size=4, max_len=8, head_learning_rate=1e-2,
        training={"max_steps": 1, "learning_rate": 1e-4, "per_device_train_batch_size": 8,
                  "save_strategy": "no", "seed": 0},
    )  # fmt: skip
    trainer = build_trainer(run, read_data(run))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    steps = {
        name: float((param.detach() - before[name]).abs().max())
        for name, param in trainer.model.named_parameters()
    }
    head = {
        n for n in steps if ".pooler." in n or ".classifier." in n or n.startswith("classifier")
    }
    # the listwise loss ignores a shift shared by a group's scores, so the classifier's bias
    # has a gradient near eps: it moves less than its rate, never more
    shifted = {n for n in head if n.endswith("classifier.bias")}
    assert all(0 <= steps[n] <= 1e-2 * (1 + 1e-3) for n in shifted), steps
    moved = head - shifted
    assert moved and all(steps[n] == pytest.approx(1e-2, rel=1e-3) for n in moved), steps
    # the body at its own rate, never more (tensors whose gradients are near eps, such as
    # attention's key bias, move less)
    body = [steps[n] for n in steps if n not in head]
    assert max(body) == pytest.approx(1e-4, rel=1e-3), sorted(body)


def test_accumulated_micro_batches_train_as_the_whole_batch(tiny_model, tmp_path, write_jsonl):
    """Two micro-batches of 4 queries with accumulation give the weights one batch of 8 gives
    (dropout off, so both see the same function; plain SGD, as Adam's per-element
    normalisation turns rounding-level gradient differences into whole steps): the listwise
    loss is a mean over groups and the trainer scales each micro-batch's share. The recipe
    bounds the cross-encoder's memory this way."""
    from transformers import AutoConfig

    from densekit.training.reranker_trainer import RerankerRun, train_reranker

    folder = tmp_path / "no-dropout"
    shutil.copytree(tiny_model, folder)
    config = AutoConfig.from_pretrained(folder)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(folder)
    train = write_jsonl(tmp_path / "train.jsonl", match_rows(16, seed=2))
    models = []
    for batch, accumulation, rate in ((8, 1, 50.0), (4, 2, 50.0), (8, 1, 0.0)):
        run = RerankerRun(
            model_name_or_path=str(folder), dataset_path=str(train),
            output_dir=str(tmp_path / f"m{batch}-{rate}"), train_group_size=4, max_len=8,
            training={"max_steps": 2, "learning_rate": rate, "per_device_train_batch_size": batch,
                      "gradient_accumulation_steps": accumulation, "save_strategy": "no",
                      "seed": 0, "warmup_steps": 0, "lr_scheduler_type": "constant",
                      "optim": "sgd", "max_grad_norm": 0.0},
        )  # fmt: skip
        train_reranker(run)
        models.append(CrossEncoderReranker.from_pretrained(run.output_dir))
    pairs = (["red", "blue", "gold"], ["red", "green", "gold"])
    whole, accumulated, before = (m.score(*pairs, activation=False) for m in models)
    # a listwise loss ignores a shift shared by a group's scores, so the head's bias gets a
    # gradient that is zero up to rounding: compare scores relative to their mean
    whole, accumulated, before = (s - s.mean() for s in (whole, accumulated, before))
    moved = np.abs(whole - before).max()
    assert moved > 1e-4  # training moved the scores
    np.testing.assert_allclose(accumulated, whole, rtol=0, atol=1e-3 * moved)


@pytest.mark.parametrize("sampling", ["grade", "uniform"])
def test_positive_sampling_reaches_the_cross_encoders_dataset(
    tiny_model, tmp_path, write_jsonl, sampling
):
    from densekit.training.reranker_trainer import RerankerRun, build_trainer, read_data

    rows = [{"query": "q", "pos": ["a", "b"], "neg": ["n"], "pos_grades": [1, 2]}]
    run = RerankerRun(
        model_name_or_path=tiny_model, dataset_path=str(write_jsonl(tmp_path / "t.jsonl", rows)),
        output_dir=str(tmp_path / "m"), train_group_size=2, max_len=8,
        positive_sampling=sampling, training={"max_steps": 1, "save_strategy": "no"},
    )  # fmt: skip
    trainer = build_trainer(run, read_data(run))
    assert trainer.train_dataset.graded is (sampling == "grade")
