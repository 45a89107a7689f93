"""``densekit train-reranker``: a toy task learned in a few steps; data formats; bad input."""

from __future__ import annotations

import random

import pytest
import torch

from densekit.commands import run_guarded
from densekit.commands.train_reranker import main
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
    """A tiny random BERT without dropout (a few steps must suffice) and a wider init."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, initializer_range=0.2,
    )  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


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
