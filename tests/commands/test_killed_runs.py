"""A process killed with SIGKILL: training resumes from its last complete checkpoint to the same
weights as an uninterrupted run, and a killed ``encode`` leaves no output that looks finished."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_launcher
from safetensors.torch import load_file

from densekit.commands import main as cli
from densekit.retrieval.embeddings import load_embeddings
from densekit.training.checkpoints import is_resumable

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _train_cmd(model: str, data: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "densekit.train", "--model_name_or_path", model,
        "--dataset_path", data, "--output_dir", str(out), "--train_group_size", "2",
        "--per_device_train_batch_size", "4", "--max_steps", "24", "--save_steps", "4",
        "--learning_rate", "1e-3", "--seed", "7", "--report_to", "none",
        "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def _kill_when(cmd: list[str], ready, timeout: float = 240) -> None:
    """Start ``cmd`` in its own process group and SIGKILL it once ``ready()`` holds."""
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(
                    "the run ended before it could be killed: " + proc.stderr.read()[-800:].decode()
                )
            if time.monotonic() > deadline:
                pytest.fail("timed out waiting for the moment to kill")
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_resume_after_sigkill_gives_the_uninterrupted_weights(tiny_model, tiny_train, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_launcher(_train_cmd(tiny_model, tiny_train, whole))
    _kill_when(
        _train_cmd(tiny_model, tiny_train, killed),
        lambda: is_resumable(killed / "checkpoint-8"),
    )
    assert not (killed / "model.safetensors").exists()
    # as if the run had died while writing checkpoint-12: config there, weights not yet
    for later in killed.glob("checkpoint-*"):
        if int(later.name.split("-")[1]) > 8:
            shutil.rmtree(later)
    (killed / "checkpoint-12").mkdir()
    shutil.copy(killed / "checkpoint-8" / "densekit_config.json", killed / "checkpoint-12")
    run_launcher(_train_cmd(tiny_model, tiny_train, killed, "--resume_from_checkpoint", "True"))
    expected = load_file(str(whole / "model.safetensors"))
    resumed = load_file(str(killed / "model.safetensors"))
    assert expected.keys() == resumed.keys()
    assert all((expected[k] == resumed[k]).all() for k in expected)


def test_killed_encode_leaves_nothing_that_looks_finished(tiny_model, tmp_path, write_jsonl):
    rows = [{"_id": f"d{i}", "text": f"passage {i} " + "word " * (i % 50)} for i in range(40_000)]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows)
    out = tmp_path / "vectors"
    cmd = [
        sys.executable, "-m", "densekit.encode", "--model_name_or_path", tiny_model,
        "--dataset_path", str(corpus), "--encode_output_path", str(out), "--batch_size", "16",
    ]  # fmt: skip
    # killed once it writes vectors: its temporary folder is left behind
    _kill_when(cmd, lambda: any(p.glob("embeddings.npy") for p in tmp_path.glob(".vectors.*")))
    assert not out.exists()
    assert cli(["encode", *cmd[3:], "--batch_size", "512"]) == 0
    assert len(load_embeddings(out)[0]) == 40_000
    # the rerun removed the temporary no live process holds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "vectors"]


def test_resuming_with_more_steps_warns_that_the_schedule_changes(
    tiny_model, tiny_train, tmp_path, caplog
):
    out = tmp_path / "run"
    flags = ["--per_device_train_batch_size", "4", "--save_steps", "4", "--report_to", "none",
             "--disable_tqdm", "true", "--train_group_size", "2"]  # fmt: skip
    base = ["train", "--model_name_or_path", tiny_model, "--dataset_path", tiny_train,
            "--output_dir", str(out), *flags]  # fmt: skip
    assert cli([*base, "--max_steps", "4"]) == 0
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert cli([*base, "--max_steps", "8", "--resume_from_checkpoint", "True"]) == 0
    warned = [r.getMessage() for r in caplog.records if "schedule" in r.getMessage()]
    assert warned and "4-step linear schedule" in warned[0] and "--max_steps 4" in warned[0]
