"""Every seed command line of ../shared/seed_commands.md runs a few steps on CPU.

Swapped, as the seed document allows: the model (a tiny local one), the dataset (a local file),
the step count (2), the batch size (small, for 2 cores) and the process count (4 -> 2). GPU-only
flags are replaced: ``--fp16``/``--bf16`` by CPU bf16 autocast, ``--deepspeed`` dropped (it is
checked separately to give a clear error here). Every other flag is kept verbatim.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import free_port, run_launcher

from densekit.commands import main as cli
from densekit.commands.train import main as train_main

SMALL = ["--max_steps", "2", "--save_steps", "20000", "--report_to", "none"]


def _finished(out: Path) -> None:
    assert (out / "densekit_config.json").is_file()
    assert (out / "model.safetensors").is_file() or (out / "adapter_config.json").is_file()


@pytest.fixture(scope="module")
def llama(tiny_decoder) -> str:
    """A tiny random LLaMA-style model standing in for Mistral-7B."""
    return tiny_decoder("llama")


def test_tevatron_v1_four_gpus_cross_device(tiny_model, scifact_train, tmp_path):
    out = tmp_path / "model_nq"
    seed = (
        f"--output_dir {out} --train_dir {scifact_train} --model_name_or_path {tiny_model} "
        "--do_train --save_steps 20000 --bf16 --per_device_train_batch_size 4 --train_n_passages 2 "
        "--learning_rate 1e-5 --q_max_len 32 --p_max_len 156 --num_train_epochs 40 --negatives_x_device"
    ).split()
    launcher = [sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node=2"]
    port = ["--master_addr", "127.0.0.1", "--master_port", free_port()]
    run_launcher([*launcher, *port, "-m", "densekit.train", *seed, *SMALL])
    _finished(out)


def test_tevatron_v1_grad_cache(tiny_model, scifact_train, tmp_path):
    out = tmp_path / "model_nq"
    seed = (
        f"--output_dir {out} --train_dir {scifact_train} --model_name_or_path {tiny_model} "
        "--do_train --save_steps 20000 --bf16 --per_device_train_batch_size 16 --train_n_passages 2 "
        "--learning_rate 1e-5 --q_max_len 32 --p_max_len 156 --num_train_epochs 40 "
        "--grad_cache --gc_q_chunk_size 4 --gc_p_chunk_size 8"
    ).split()
    assert train_main([*seed, *SMALL]) == 0
    _finished(out)


def test_tevatron_v1_jax_flags_through_the_torch_driver(tiny_model, scifact_train, tmp_path):
    out = tmp_path / "model_nq"
    seed = (
        f"--output_dir {out} --train_dir {scifact_train} --model_name_or_path {tiny_model} "
        "--do_train --per_device_train_batch_size 8 --train_n_passages 2 --learning_rate 1e-5 "
        "--q_max_len 32 --p_max_len 156 --num_train_epochs 40"
    ).split()
    assert train_main([*seed, *SMALL]) == 0
    _finished(out)


def test_tevatron_v2_mistral_lora(llama, scifact_train, tmp_path):
    out = tmp_path / "retriever-mistral"
    seed = [
        "--output_dir", str(out), "--model_name_or_path", llama, "--lora",
        "--lora_target_modules", "q_proj,k_proj,v_proj,o_proj,down_proj,up_proj,gate_proj",
        "--save_steps", "50", "--dataset_name", scifact_train,
        "--query_prefix", "Query: ", "--passage_prefix", "Passage: ", "--bf16",
        "--pooling", "eos", "--append_eos_token", "--normalize", "--temperature", "0.01",
        "--per_device_train_batch_size", "2", "--gradient_checkpointing", "--train_group_size", "4",
        "--learning_rate", "1e-4", "--query_max_len", "32", "--passage_max_len", "128",
        "--num_train_epochs", "1", "--logging_steps", "10", "--overwrite_output_dir",
        "--gradient_accumulation_steps", "2",
    ]  # fmt: skip
    assert train_main([*seed, *SMALL]) == 0
    assert (out / "adapter_config.json").is_file()
    from densekit.modeling.encoder import DenseEncoder

    reloaded = DenseEncoder.from_pretrained(str(out))
    assert reloaded.settings.pooling == "last" and reloaded.settings.append_eos_token
    assert reloaded.settings.query_prefix == "Query: "


def test_tevatron_v2_bert(tiny_model, scifact_train, tmp_path):
    out = tmp_path / "retriever-bert"
    seed = (
        f"--output_dir {out} --model_name_or_path {tiny_model} --dataset_name {scifact_train} "
        "--bf16 --pooling cls --per_device_train_batch_size 4 --train_group_size 16 "
        "--learning_rate 1e-5 --query_max_len 32 --passage_max_len 128 --num_train_epochs 5 "
        "--logging_steps 10 --overwrite_output_dir"
    ).split()
    assert train_main([*seed, *SMALL]) == 0
    _finished(out)


def test_paddlenlp_contrastive(tiny_model, scifact_train, tmp_path):
    out = tmp_path / "checkpoints"
    seed = (
        f"--do_train --model_name_or_path {tiny_model} --output_dir {out} "
        f"--train_data {scifact_train} --overwrite_output_dir --fine_tune_type sft "
        "--sentence_pooling_method cls --num_train_epochs 3 --per_device_train_batch_size 4 "
        "--learning_rate 3e-5 --train_group_size 4 --recompute --passage_max_len 512 --use_matryoshka "
        "--matryoshka_dims 8,16,32 --matryoshka_loss_weights 1,1,1"
    ).split()
    assert train_main([*seed, *SMALL]) == 0
    _finished(out)


def test_accelerate_launch(tiny_model, scifact_train, tmp_path):
    out = tmp_path / "acc"
    args = (
        f"--output_dir {out} --model_name_or_path {tiny_model} --dataset_path {scifact_train} "
        "--per_device_train_batch_size 4 --train_group_size 2"
    ).split()
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1"]
    run_launcher([*launcher, "-m", "densekit.train", *args, *SMALL])
    _finished(out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
@pytest.mark.parametrize(
    "flags",
    [["--deepspeed", "deepspeed/ds_zero3_config.json"], ["--fp16"], ["--use_flash_attention"]],
)
def test_gpu_only_flags_fail_clearly(tiny_model, scifact_train, tmp_path, capsys, flags):
    out = tmp_path / "never"
    base = [
        "--output_dir",
        str(out),
        "--model_name_or_path",
        tiny_model,
        "--dataset_path",
        scifact_train,
    ]
    assert cli(["train", *base, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GPU" in err[0]
    assert not out.exists()
