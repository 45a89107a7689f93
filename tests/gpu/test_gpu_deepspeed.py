"""DeepSpeed ZeRO-2/3 and torch.distributed at world size 1 on CUDA, in separate processes.

``bench/gpu_worker.py`` trains under ``torchrun --nproc_per_node 1`` (one process per mode, so
DeepSpeed's global state stays out of this one) and records every step's loss and the first
step's full gradient. What is claimed, and checked here:

* plain (the Trainer's DDP path, world size 1): GradCache gives the plain gradient, and
  ``--negatives_cross_device`` changes nothing (the gather is the identity at world size 1);
* ZeRO-2 and ZeRO-3 (the README's config files, fp32) train, and their first-step gradient and
  their losses equal the plain run's;
* ``--grad_cache`` with ``--deepspeed`` is refused with one line: GradCache's first backward
  (on the cached vectors) would go through the DeepSpeed engine, which steps the optimizer
  inside ``backward``, before the chunks have produced any parameter gradient. No peer runs
  GradCache under ZeRO-3 either. The worker also runs one bypassed GradCache step and records
  what it gives, as a diagnostic (docs/gpu.md);
* ZeRO-3 saves a folder (weights gathered from the shards) that reloads to the trained weights,
  and the README's ``deepspeed --module densekit.train --deepspeed ds_zero3_config.json`` line
  trains and saves.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from gpu_support import ROOT, grad_errors, make_tiny_bert, record, total_rel_err

pytestmark = pytest.mark.gpu

needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="needs deepspeed (bash bench/gpu_wheels.sh carries it to the GPU machine)",
)
GRAD_TOL, TENSOR_TOL, LOSS_TOL = 1e-4, 1e-3, 1e-3


def _env() -> dict:
    path = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "OMP_NUM_THREADS": "4",
        "TOKENIZERS_PARALLELISM": "false",
        "DS_ACCELERATOR": "cuda",
        "PYTHONUNBUFFERED": "1",
    }


def _launch(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(
            cmd, env=_env(), capture_output=True, text=True, timeout=timeout, cwd=str(ROOT)
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n{(exc.stderr or '')[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def worker_model(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("worker-bert"), dropout=0.0)


@pytest.fixture(scope="module")
def worker(worker_model, tmp_path_factory):
    """``worker(mode)``: the worker's results for a mode (run once per module)."""
    done: dict[str, dict] = {}
    folder = tmp_path_factory.mktemp("worker-out")

    def get(mode: str) -> dict:
        if mode not in done:
            out = folder / f"{mode}.pt"
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "1",
                str(ROOT / "bench" / "gpu_worker.py"),
                "--mode",
                mode,
                "--model",
                worker_model,
                "--out",
                str(out),
            ]
            proc = _launch(cmd, timeout=240)
            result = torch.load(out, weights_only=False) if out.exists() else {}
            result["_stderr"] = proc.stderr[-4000:]
            result["_rc"] = proc.returncode
            done[mode] = result
        result = done[mode]
        return result

    return get


def _main(result: dict, key: str) -> dict:
    if key not in result:
        pytest.fail(
            f"the worker produced no '{key}' run (rc {result['_rc']}):\n{result['_stderr']}"
        )
    return result[key]


def _compare(name: str, got: dict, ref: dict) -> None:
    assert got["grads"], f"{name}: no gradient captured"
    errors = grad_errors(got["grads"], ref["grads"])
    total = total_rel_err(got["grads"], ref["grads"])
    worst = max(errors, key=errors.get)
    loss_errs = [abs(a - b) / abs(b) for a, b in zip(got["losses"], ref["losses"], strict=False)]
    record(
        name,
        total_rel_err=total,
        worst_tensor=worst,
        worst_rel_err=errors[worst],
        losses=got["losses"],
        reference_losses=ref["losses"],
        wrapped=got.get("wrapped"),
    )
    assert len(got["losses"]) == len(ref["losses"]) == 3
    assert all(torch.isfinite(torch.tensor(got["losses"])))
    assert total <= GRAD_TOL, f"{name}: ‖Δg‖/‖g‖ = {total:.2e}"
    assert errors[worst] <= TENSOR_TOL, f"{name}: {worst} {errors[worst]:.2e}"
    assert max(loss_errs) <= LOSS_TOL, f"{name}: losses {got['losses']} vs {ref['losses']}"


def test_cross_device_negatives_at_world_size_one(worker):
    result = worker("plain")
    plain, xdev = _main(result, "plain"), _main(result, "xdev")
    assert xdev["world_size"] == 1 and xdev["dist_backend"] == "nccl", xdev
    assert result["gather"] == {"same_values": True, "grad_ok": True}
    _compare("xdev_vs_plain_world_size_1", xdev, plain)
    _compare("xdev_grad_cache_vs_plain_world_size_1", _main(result, "xdev_gc"), plain)


def test_grad_cache_equals_plain_under_torch_distributed(worker):
    result = worker("plain")
    _compare("grad_cache_vs_plain_ddp_path", _main(result, "plain_gc"), _main(result, "plain"))


@needs_deepspeed
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_trains_with_the_plain_first_step_gradient(worker, stage):
    plain = _main(worker("plain"), "plain")
    result = worker(f"zero{stage}")
    ds = _main(result, "ds")
    assert ds["wrapped"] == "DeepSpeedEngine", ds["wrapped"]
    _compare(f"zero{stage}_vs_plain", ds, plain)


@needs_deepspeed
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_refuses_grad_cache_and_bypass_is_recorded(worker, stage):
    result = worker(f"zero{stage}")
    refusal = _main(result, "refusal")
    bypass = result.get("bypass", {})
    plain_gc = _main(worker("plain"), "plain_gc")
    if bypass.get("grads"):
        diag = {"total_rel_err": total_rel_err(bypass["grads"], plain_gc["grads"])}
    else:
        diag = {"error": bypass.get("error", "no gradient captured")}
    record(f"zero{stage}_grad_cache_bypassed_diagnostic", **diag, losses=bypass.get("losses"))
    assert (
        isinstance(refusal, str) and "--grad_cache cannot be combined with --deepspeed" in refusal
    )


@needs_deepspeed
def test_zero3_saved_model_reloads_to_the_trained_weights(worker):
    saved = _main(worker("zero3"), "saved")
    record("zero3_save_reload", **saved)
    assert "error" not in saved, saved
    errors = saved["max_abs_err"]
    assert errors and all(isinstance(e, float) for e in errors.values()), errors
    assert max(errors.values()) <= 1e-6, errors


@needs_deepspeed
@pytest.mark.skipif(
    importlib.util.find_spec("datasets") is None or importlib.util.find_spec("faiss") is None,
    reason="densekit train needs datasets (its data readers) and faiss (imported through "
    "evaluation.exact); not installed",
)
def test_readme_deepspeed_zero3_command_trains_and_saves(worker_model, tmp_path):
    from gpu_support import train_items

    data = tmp_path / "train.jsonl"
    rows = [
        {"query": i["query"], "pos": i["passages"][:1], "neg": i["passages"][1:]}
        for i in train_items(16, 3)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "model"
    port = str(29500 + os.getpid() % 1000)
    cmd = [
        sys.executable,
        "-m",
        "deepspeed.launcher.runner",
        "--num_gpus",
        "1",
        "--master_port",
        port,
        "--module",
        "densekit.train",
        "--deepspeed",
        str(ROOT / "deepspeed" / "ds_zero3_config.json"),
        "--model_name_or_path",
        worker_model,
        "--dataset_path",
        str(data),
        "--output_dir",
        str(out),
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "8",
        "--train_group_size",
        "3",
        "--pooling",
        "mean",
        "--normalize",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
    ]
    proc = _launch(cmd, timeout=240)
    record("readme_deepspeed_zero3_cli", rc=proc.returncode, tail=proc.stderr[-1500:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "densekit_config.json").is_file()
    from densekit.modeling.encoder import DenseEncoder

    encoder = DenseEncoder.from_pretrained(str(out))
    assert all(torch.isfinite(p).all() for p in encoder.parameters())
