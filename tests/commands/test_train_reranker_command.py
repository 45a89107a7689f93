"""``densekit train-reranker``'s flags for LoRA, bitfit and evaluation; bad input."""

from __future__ import annotations

import pytest

from densekit.commands import run_guarded
from densekit.commands.train_reranker import build_parser, main, to_run

BASE = ["--model", "m", "--dataset_path", "t.jsonl", "--output_dir", "o"]


def test_flags_reach_the_run():
    args = build_parser().parse_args(
        [*BASE, "--lora", "--lora_r", "4", "--lora_alpha", "16", "--lora_dropout", "0.05",
         "--lora_target_modules", "query", "value", "--gradient_checkpointing",
         "--corpus_path", "c.jsonl", "--eval_run", "r.trec", "--eval_queries", "q.jsonl",
         "--eval_qrels", "qrels.tsv", "--eval_depth", "30", "--eval_strategy", "steps",
         "--eval_steps", "50", "--load_best_model_at_end"]
    )  # fmt: skip
    run = to_run(args)
    assert run.fine_tune_type == "lora" and (run.lora_r, run.lora_alpha) == (4, 16)
    assert run.lora_target_modules == "query,value" and run.lora_dropout == 0.05
    assert (run.eval_run, run.eval_depth, run.corpus_path) == ("r.trec", 30, "c.jsonl")
    training = run.training
    assert training["gradient_checkpointing"] and training["load_best_model_at_end"]
    assert training["eval_strategy"] == training["save_strategy"] == "steps"
    assert training["eval_steps"] == training["save_steps"] == 50
    assert to_run(build_parser().parse_args([*BASE, "--bitfit"])).fine_tune_type == "bitfit"
    plain = to_run(build_parser().parse_args(BASE))
    assert plain.fine_tune_type == "full" and plain.training["eval_strategy"] == "no"
    assert plain.positive_sampling == "grade"
    uniform = build_parser().parse_args([*BASE, "--positive_sampling", "uniform"])
    assert to_run(uniform).positive_sampling == "uniform"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--eval_run", "RUN"], "--eval_qrels"),
        (["--eval_run", "RUN", "--eval_queries", "Q", "--eval_qrels", "QRELS"], "--corpus_path"),
        (["--load_best_model_at_end"], "needs evaluation"),
        (["--eval_strategy", "steps"], "needs evaluation"),
        (["--lora", "--bitfit"], "contradicts"),
        (["--eval_metrics", "ndcg@x"], "unknown metric"),
        (
            ["--EVAL", "--metric_for_best_model", "recall@5", "--load_best_model_at_end"],
            "not computed",
        ),
        (["--EVAL", "--MISSING_DOC"], "not in the corpus"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    tiny_model, tmp_path, write_jsonl, capsys, flags, message
):
    train = write_jsonl(tmp_path / "train.jsonl", [{"query": "a", "pos": ["a"], "neg": ["b"]}] * 4)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d0", "text": "a"}])
    queries = write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q0", "text": "a"}])
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\n")
    (tmp_path / "run.trec").write_text("q0 Q0 d0 1 2.0 x\n")
    out = tmp_path / "out" / "model"
    argv = ["--model", tiny_model, "--dataset_path", str(train), "--output_dir", str(out),
            "--train_group_size", "2", "--max_steps", "1"]  # fmt: skip
    for flag in flags:
        if flag == "--EVAL":
            argv += ["--corpus_path", str(corpus), "--eval_run", str(tmp_path / "run.trec"),
                     "--eval_queries", str(queries), "--eval_qrels", str(tmp_path / "qrels.tsv")]  # fmt: skip
        elif flag == "--MISSING_DOC":
            (tmp_path / "run.trec").write_text("q0 Q0 d0 1 2.0 x\nq0 Q0 d9 2 1.0 x\n")
        else:
            argv.append(flag)
    capsys.readouterr()
    assert run_guarded(main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert message in err[0], err
    assert not (tmp_path / "out").exists()
