"""Real multi-process training (torchrun, gloo): a global batch split over 2 processes with
cross-device negatives must produce the update of one process holding the whole batch.

One SGD step at learning rate 1 with no clipping or decay makes the weight change equal the
gradient, so comparing saved weights compares gradients. Dropout is off: two processes draw
other dropout masks than one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import free_port, run_launcher
from safetensors.torch import load_file

from densekit.commands.train import main as train_main

STEP_FLAGS = [
    "--train_group_size",
    "3",
    "--query_max_len",
    "16",
    "--passage_max_len",
    "24",
    "--max_steps",
    "1",
    "--optim",
    "sgd",
    "--learning_rate",
    "1.0",
    "--max_grad_norm",
    "0",
    "--weight_decay",
    "0",
    "--lr_scheduler_type",
    "constant",
    "--save_strategy",
    "no",
    "--pooling",
    "mean",
    "--normalize",
    "--temperature",
    "0.1",
    "--seed",
    "3",
]


@pytest.fixture(scope="module")
def no_dropout_model(tiny_model, tmp_path_factory) -> str:
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-nodrop")
    model = AutoModel.from_pretrained(
        tiny_model, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def eight_rows(tmp_path_factory, write_jsonl) -> str:
    rows = [
        {
            "query": f"which protein binds receptor {i}",
            # queries 0-3 share a judged positive with query i + 4: the false-negative mask
            # then spans the two processes' halves of the batch
            "pos": [f"receptor {j} is bound by protein {j * 7}" for j in (i, i + 4) if j < 8],
            "neg": [f"protein {i + j} has nothing to do with receptor {i}" for j in range(1, 4)],
        }
        for i in range(8)
    ]
    return str(write_jsonl(tmp_path_factory.mktemp("ddp-data") / "train.jsonl", rows))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _torchrun(args: list[str], out: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        free_port(),
        "-m",
        "densekit.train",
        *args,
    ]
    run_launcher(cmd)
    assert (out / "densekit_config.json").is_file()


@pytest.fixture(scope="module")
def single_process_step(no_dropout_model, eight_rows, tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("one") / "model"
    common = ["--model_name_or_path", no_dropout_model, "--dataset_path", eight_rows]
    assert (
        train_main(
            [*common, "--output_dir", str(out), "--per_device_train_batch_size", "8", *STEP_FLAGS]
        )
        == 0
    )
    return _weights(out)


@pytest.mark.parametrize(
    "extra",
    [
        ["--gradient_checkpointing"],
        ["--grad_cache", "--gc_q_chunk_size", "1", "--gc_p_chunk_size", "5"],
    ],
    ids=["checkpointing", "grad_cache"],
)
def test_two_processes_with_cross_device_negatives_equal_one(
    no_dropout_model, eight_rows, single_process_step, tmp_path, extra
):
    """Two gloo processes (all-gathered negatives, all-reduced gradients) against one process
    on the whole batch: torch both ways, but other matmul shapes and reduction orders, so the
    weights agree to 1e-4 relatively and 1e-5 of each tensor's largest entry."""
    out = tmp_path / "model"
    common = ["--model_name_or_path", no_dropout_model, "--dataset_path", eight_rows]
    flags = [
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        "4",
        "--negatives_cross_device",
    ]
    _torchrun([*common, *flags, *STEP_FLAGS, *extra], out)
    before = _weights(Path(no_dropout_model))
    after = _weights(out)
    moved = max((single_process_step[k] - before[k]).abs().max().item() for k in before)
    assert moved > 1e-3  # the step really changed the weights
    for key, value in single_process_step.items():
        atol = 1e-5 * max(1.0, value.abs().max().item())
        torch.testing.assert_close(after[key], value, atol=atol, rtol=1e-4, msg=key)


def test_two_processes_without_cross_device_negatives_differ(
    no_dropout_model, eight_rows, single_process_step, tmp_path
):
    """Guards the test above: local-only negatives are a different loss, so a different step."""
    out = tmp_path / "model"
    common = ["--model_name_or_path", no_dropout_model, "--dataset_path", eight_rows]
    _torchrun(
        [*common, "--output_dir", str(out), "--per_device_train_batch_size", "4", *STEP_FLAGS], out
    )
    after = _weights(out)
    gap = max((after[k] - single_process_step[k]).abs().max().item() for k in after)
    assert gap > 1e-4


def test_the_mask_takes_part(no_dropout_model, eight_rows, single_process_step, tmp_path):
    """Guards the equality above: these rows share positives, so the step without the
    false-negative mask is another step."""
    out = tmp_path / "model"
    common = ["--model_name_or_path", no_dropout_model, "--dataset_path", eight_rows]
    flags = ["--output_dir", str(out), "--per_device_train_batch_size", "8"]
    assert train_main([*common, *flags, *STEP_FLAGS, "--no_mask_false_negatives"]) == 0
    after = _weights(out)
    gap = max((after[k] - single_process_step[k]).abs().max().item() for k in after)
    assert gap > 1e-4
