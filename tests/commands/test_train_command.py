"""``densekit train`` end to end: the loss falls, the saved model is the trained one, resume works,
and bad input stops the run with exit code 2 before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from densekit import commands as cli
from densekit.arguments import parse_train_args
from densekit.data.collator import tokenize
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.training.run import train

QUIET = ["--report_to", "none", "--disable_tqdm", "true", "--logging_steps", "1"]
PROBE = [
    "Vitamin D deficiency is associated with multiple sclerosis.",
    "Aspirin reduces the risk of colorectal cancer.",
]


def _vectors(encoder: DenseEncoder, tokenizer, is_query: bool) -> torch.Tensor:
    encoder.eval()
    with torch.no_grad():
        return encoder.encode(dict(tokenize(tokenizer, PROBE, 64)), is_query=is_query)


@pytest.fixture(scope="module")
def trained(scifact_train, minilm, tmp_path_factory):
    """8 steps of MiniLM on 64 SciFact queries (group 4, batch 8), via the Python API."""
    out = tmp_path_factory.mktemp("run") / "model"
    argv = [
        "--model_name_or_path", minilm,
        "--dataset_path", scifact_train,
        "--output_dir", str(out),
        "--train_group_size", "4",
        "--per_device_train_batch_size", "8",
        "--passage_max_len", "64",
        "--max_steps", "8",
        "--learning_rate", "5e-5",
        "--temperature", "0.05",
        "--save_steps", "8",
        "--seed", "0",
        *QUIET,
    ]  # fmt: skip
    trainer = train(*parse_train_args(argv))
    return trainer, out


def test_loss_goes_down(trained):
    _, out = trained
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == 8
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_saved_model_is_the_trained_model(trained, minilm):
    trainer, out = trained
    assert (out / "densekit_config.json").is_file() and (out / "modules.json").is_file()
    assert not any(p.name.startswith(".final-") for p in out.iterdir())
    reloaded = DenseEncoder.from_pretrained(str(out))
    assert reloaded.settings.pooling == "mean" and reloaded.settings.normalize
    assert reloaded.settings.temperature == 0.05
    assert reloaded.settings.passage_max_len == 64
    tokenizer = load_tokenizer(str(out))
    in_memory = trainer.model
    for is_query in (True, False):
        torch.testing.assert_close(
            _vectors(reloaded, tokenizer, is_query),
            _vectors(in_memory, tokenizer, is_query),
            rtol=0,
            atol=0,
        )
    # and training changed the model
    original = DenseEncoder.from_pretrained(minilm)
    assert not torch.allclose(
        _vectors(original, tokenizer, True), _vectors(reloaded, tokenizer, True)
    )


def _error_lines(stderr: str) -> list[str]:
    """densekit's error lines (progress bars of model loading may share stderr)."""
    lines = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert lines and lines[-1].startswith("densekit: error: ")
    return lines


def _tiny_run(tiny_model, tiny_train, out, *extra):
    return [
        "train",
        "--model_name_or_path", tiny_model,
        "--dataset_path", tiny_train,
        "--output_dir", str(out),
        "--train_group_size", "3",
        "--per_device_train_batch_size", "4",
        "--query_max_len", "16",
        "--passage_max_len", "24",
        "--learning_rate", "1e-3",
        "--seed", "0",
        *QUIET,
        *extra,
    ]  # fmt: skip


def test_resume_from_checkpoint(tiny_model, tiny_train, tokenizer, tmp_path):
    first = tmp_path / "first"
    argv = _tiny_run(tiny_model, tiny_train, first, "--max_steps", "4", "--save_steps", "2")
    assert cli.main(argv) == 0
    assert (first / "checkpoint-2" / "trainer_state.json").is_file()
    assert (first / "checkpoint-4").is_dir()
    resumed = tmp_path / "resumed"
    argv = _tiny_run(
        tiny_model,
        tiny_train,
        resumed,
        "--max_steps", "4",
        "--save_steps", "2",
        "--resume_from_checkpoint", str(first / "checkpoint-2"),
    )  # fmt: skip
    assert cli.main(argv) == 0
    state = json.loads((resumed / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    logged_steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert logged_steps[-2:] == [3, 4]
    # resuming reproduces the uninterrupted run (same data, same RNG, restored optimizer)
    a = DenseEncoder.from_pretrained(str(first))
    b = DenseEncoder.from_pretrained(str(resumed))
    start = DenseEncoder.from_pretrained(str(first / "checkpoint-2"))
    torch.testing.assert_close(_vectors(b, tokenizer, True), _vectors(a, tokenizer, True))
    assert not torch.allclose(_vectors(start, tokenizer, True), _vectors(a, tokenizer, True))


def test_bad_train_file_exits_2_and_writes_nothing(tiny_model, tmp_path, capsys):
    bad = tmp_path / "bad_rows.jsonl"
    bad.write_text(
        json.dumps({"query": "ok", "pos": ["fine"]}) + "\n" + json.dumps({"query": "x", "pos": []}),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    code = cli.main(_tiny_run(tiny_model, str(bad), out, "--max_steps", "2"))
    assert code == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1
    assert "bad_rows.jsonl:2" in errors[0] and "empty positive list" in errors[0]
    assert not out.exists() or not any(out.iterdir())


def test_non_empty_output_dir_needs_overwrite(tiny_model, tiny_train, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code = cli.main(_tiny_run(tiny_model, tiny_train, out, "--max_steps", "1"))
    assert code == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "--overwrite_output_dir" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    code = cli.main(
        _tiny_run(tiny_model, tiny_train, out, "--max_steps", "1", "--overwrite_output_dir")
    )
    assert code == 0
    assert (out / "densekit_config.json").is_file()
    assert (Path(out) / "precious.txt").read_text() == "keep me"


def test_unknown_flag_exits_2(capsys, tmp_path):
    assert cli.main(["train", "--output_dir", str(tmp_path / "o"), "--bogus_flag", "1"]) == 2
    assert "unknown flag" in capsys.readouterr().err
