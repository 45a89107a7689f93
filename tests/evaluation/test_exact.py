"""Exact full-corpus evaluation during training: the logged metrics are those of a separate
encode -> search -> evaluate of the same checkpoint, and the best checkpoint is the one kept."""

from __future__ import annotations

import pytest
from conftest import encode_and_search
from safetensors.torch import load_file

from densekit.arguments import parse_train_args
from densekit.commands import main as cli
from densekit.commands.train import build_evaluator
from densekit.data.qrels import load_qrels
from densekit.data.runs import read_run
from densekit.errors import ConfigError
from densekit.evaluation.metrics import evaluate
from densekit.training.run import train

QUIET = ["--report_to", "none", "--disable_tqdm", "true"]


@pytest.fixture
def eval_files(tmp_path, write_jsonl):
    topics = ["cats", "rust", "tea", "jazz", "rain", "salt"]
    corpus = [{"_id": f"d{i}", "text": f"a text on {topics[i % 6]} number {i}"} for i in range(24)]
    queries = [{"_id": f"q{i}", "text": f"tell me about {topics[i]}"} for i in range(6)]
    qrels = "".join(f"q{i}\t0\td{i}\t1\nq{i}\t0\td{i + 6}\t2\n" for i in range(6))
    (tmp_path / "qrels.txt").write_text(qrels)
    return (
        write_jsonl(tmp_path / "corpus.jsonl", corpus),
        write_jsonl(tmp_path / "queries.jsonl", queries),
        tmp_path / "qrels.txt",
    )


def _argv(tiny_model, tiny_train, out, files, *extra):
    corpus, queries, qrels = files
    return [
        "--model_name_or_path", tiny_model, "--dataset_path", tiny_train, "--output_dir", str(out),
        "--train_group_size", "2", "--per_device_train_batch_size", "4", "--num_train_epochs", "2",
        "--learning_rate", "1e-3", "--pooling", "mean", "--eval_corpus", str(corpus),
        "--eval_queries", str(queries), "--eval_qrels", str(qrels), "--eval_metrics",
        "ndcg@10,mrr@10,recall@5", "--save_strategy", "epoch", *QUIET, *extra,
    ]  # fmt: skip


def test_logged_metrics_equal_the_file_based_path(tiny_model, tiny_train, tmp_path, eval_files):
    args = parse_train_args(_argv(tiny_model, tiny_train, tmp_path / "run", eval_files))
    trainer = train(*args, evaluator=build_evaluator(args[2]))
    logged = [e for e in trainer.state.log_history if "eval_ndcg@10" in e]
    assert [e["step"] for e in logged] == [4, 8]
    corpus, queries, qrels = eval_files
    for entry in logged:
        checkpoint = tmp_path / "run" / f"checkpoint-{entry['step']}"
        run = encode_and_search(str(checkpoint), corpus, queries, qrels, tmp_path / checkpoint.name)
        _, mean = evaluate(read_run(run), load_qrels(qrels), ["ndcg@10", "mrr@10", "recall@5"])
        for metric, value in mean.items():
            assert entry[f"eval_{metric}"] == pytest.approx(value, rel=1e-6)


class PlantedEvaluator:
    """Scores 0.2, 0.9, 0.4 at the three evaluations: the second checkpoint is the best."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, encoder, tokenizer):
        self.calls += 1
        return {"ndcg@10": [0.2, 0.9, 0.4][self.calls - 1]}


def test_load_best_model_at_end_keeps_the_planted_best(
    tiny_model, tiny_train, tmp_path, eval_files
):
    extra = ["--num_train_epochs", "3", "--load_best_model_at_end", "true",
             "--metric_for_best_model", "ndcg@10", "--eval_strategy", "epoch"]  # fmt: skip
    args = parse_train_args(_argv(tiny_model, tiny_train, tmp_path / "run", eval_files, *extra))
    trainer = train(*args, evaluator=PlantedEvaluator())
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-8")
    best = load_file(str(tmp_path / "run" / "checkpoint-8" / "model.safetensors"))
    final = load_file(str(tmp_path / "run" / "model.safetensors"))
    last = load_file(str(tmp_path / "run" / "checkpoint-12" / "model.safetensors"))
    assert all((best[k] == final[k]).all() for k in best)
    assert any((last[k] != final[k]).any() for k in last)


def test_bad_evaluation_setups_fail_before_training(
    tiny_model, tiny_train, tmp_path, eval_files, capsys
):
    base = ["train", "--model_name_or_path", tiny_model, "--dataset_path", tiny_train,
            "--output_dir", str(tmp_path / "o"), *QUIET]  # fmt: skip
    assert cli([*base, "--load_best_model_at_end", "true", "--eval_strategy", "epoch",
                "--save_strategy", "epoch"]) == 2  # fmt: skip
    assert "needs an eval set" in capsys.readouterr().err
    argv = _argv(
        tiny_model, tiny_train, tmp_path / "o", eval_files, "--metric_for_best_model", "map@10"
    )
    with pytest.raises(ConfigError, match="map@10 is not computed"):
        parse_train_args(argv)
    corpus, queries, _ = eval_files
    (tmp_path / "other.txt").write_text("zz 0 d1 1\n")
    argv = _argv(tiny_model, tiny_train, tmp_path / "o", (corpus, queries, tmp_path / "other.txt"))
    assert cli(["train", *argv]) == 2
    assert "shares no query" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_two_processes_log_what_one_process_measures(tiny_model, tiny_train, tmp_path, eval_files):
    """Under torchrun each rank encodes half of the corpus and rank 0 searches; the logged
    metrics must be those of a single-process encode -> search -> evaluate of the checkpoint."""
    import json
    import sys

    from conftest import free_port, run_launcher

    out = tmp_path / "run"
    argv = _argv(tiny_model, tiny_train, out, eval_files, "--per_device_train_batch_size", "2")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", free_port(), "-m", "densekit.train"]  # fmt: skip
    run_launcher([*launcher, *argv])
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2
    corpus, queries, qrels = eval_files
    for checkpoint in checkpoints:
        history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
        entry = [e for e in history if "eval_ndcg@10" in e][-1]
        run = encode_and_search(str(checkpoint), corpus, queries, qrels, tmp_path / checkpoint.name)
        _, mean = evaluate(read_run(run), load_qrels(qrels), ["ndcg@10", "mrr@10", "recall@5"])
        for metric, value in mean.items():
            assert entry[f"eval_{metric}"] == pytest.approx(value, rel=1e-6)


def test_tensorboard_gets_the_exact_metrics_side_by_side(
    tiny_model, tiny_train, tmp_path, eval_files
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    argv = _argv(tiny_model, tiny_train, out, eval_files, "--logging_steps", "1")
    argv[argv.index("--report_to") + 1] = "tensorboard"
    args = parse_train_args(argv)
    trainer = train(*args, evaluator=build_evaluator(args[2]))
    events = EventAccumulator(str(next(out.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "train/loss" in tags and "train/learning_rate" in tags
    exact = sorted(t for t in tags if t.startswith("eval/"))  # one group: eval/<metric>
    assert {"eval/ndcg@10", "eval/mrr@10", "eval/recall@5"} <= set(exact)
    logged = [e for e in trainer.state.log_history if "eval_ndcg@10" in e]
    written = events.Scalars("eval/ndcg@10")
    assert [s.step for s in written] == [e["step"] for e in logged]
    assert [s.value for s in written] == pytest.approx([e["eval_ndcg@10"] for e in logged])
