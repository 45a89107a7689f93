"""Every training run explains itself: curves PNG, report.md, and a model card the hub reads."""

from __future__ import annotations

import matplotlib.image

from densekit.arguments import parse_train_args
from densekit.training.model_card import read_front_matter, write_model_card
from densekit.training.report import curves, write_report
from densekit.training.run import train

HISTORY = [
    {"loss": 2.0, "learning_rate": 1e-4, "step": 1},
    {"loss": 1.5, "learning_rate": 5e-5, "step": 2},
    {"eval_ndcg@10": 0.4, "eval_exact_seconds": 3.0, "epoch": 1.0, "step": 2},
    {"loss": 1.0, "learning_rate": 0.0, "step": 3},
    {"eval_ndcg@10": 0.5, "eval_runtime": 1.0, "step": 3},
    {"train_runtime": 9.0, "train_loss": 1.5, "step": 3},
]


def test_curves_keep_loss_learning_rate_and_eval_metrics():
    series = curves(HISTORY)
    assert series == {
        "loss": [(1, 2.0), (2, 1.5), (3, 1.0)],
        "learning_rate": [(1, 1e-4), (2, 5e-5), (3, 0.0)],
        "eval_ndcg@10": [(2, 0.4), (3, 0.5)],
    }


def test_report_png_and_markdown(tmp_path):
    write_report(tmp_path, HISTORY, {"lr": 1e-4}, {"training examples": 12}, {"train": 9.0})
    image = matplotlib.image.imread(tmp_path / "training_curves.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
    report = (tmp_path / "report.md").read_text()
    assert "| loss | 3 | 3 | 1 |" in report and "| eval_ndcg@10 | 2 | 3 | 0.5 |" in report
    assert "- eval_ndcg@10: 0.5000" in report and "- training examples: 12" in report


def test_model_card_front_matter(tmp_path):
    write_model_card(
        tmp_path, "BAAI/bge-small-en", "train.jsonl", "InfoNCELoss", {"epochs": 1},
        {"ndcg@10": 0.71}, {"pooling": "mean", "normalize": True},
    )  # fmt: skip
    header = read_front_matter(tmp_path / "README.md")
    assert header["base_model"] == "BAAI/bge-small-en" and header["library_name"] == "densekit"
    values = header["model-index"][0]["results"][0]["metrics"]
    assert values == [{"type": "ndcg@10", "value": 0.71}]
    write_model_card(tmp_path, str(tmp_path), "d", "l", {}, {}, {})
    assert "base_model" not in read_front_matter(tmp_path / "README.md")  # a local path


def test_a_training_run_writes_card_report_and_curves(tiny_model, tiny_train, tmp_path):
    argv = ["--model_name_or_path", tiny_model, "--dataset_path", tiny_train, "--output_dir",
            str(tmp_path / "m"), "--train_group_size", "2", "--per_device_train_batch_size", "8",
            "--max_steps", "2", "--logging_steps", "1", "--report_to", "none",
            "--disable_tqdm", "true"]  # fmt: skip
    train(*parse_train_args(argv))
    out = tmp_path / "m"
    assert read_front_matter(out / "README.md")["pipeline_tag"] == "sentence-similarity"
    assert "| loss | 2 |" in (out / "report.md").read_text()
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
