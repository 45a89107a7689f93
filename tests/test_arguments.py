"""Argument parsing: the seed toolkits' aliases, their verbatim command lines, hardware checks."""

from __future__ import annotations

import json
import shlex

import pytest
import torch

from densekit.arguments import parse_train_args
from densekit.errors import ConfigError

BASE = ["--output_dir", "out"]


def _parse(*flags: str, check_hardware: bool = False):
    return parse_train_args([*BASE, *flags], check_hardware=check_hardware)


def _value(parsed, field: str):
    for args in parsed:
        if hasattr(args, field):
            return getattr(args, field)
    raise AssertionError(f"no field {field}")


@pytest.mark.parametrize(
    ("flags", "field", "expected"),
    [
        (["--train_n_passages", "5"], "train_group_size", 5),
        (["--group_size", "6"], "train_group_size", 6),
        (["--q_max_len", "17"], "query_max_len", 17),
        (["--p_max_len", "156"], "passage_max_len", 156),
        (["--negatives_x_device"], "negatives_cross_device", True),
        (["--sentence_pooling_method", "mean"], "pooling", "mean"),
        (["--pooling", "eos"], "pooling", "last"),
        (["--normalized"], "normalize", True),
        (["--normalize"], "normalize", True),
        (["--normalize", "false"], "normalize", False),
        (["--train_dir", "some/dir"], "dataset_path", "some/dir"),
        (["--train_data", "f.jsonl"], "dataset_path", "f.jsonl"),
        (["--dataset_name", "hub/name"], "dataset_path", "hub/name"),
        (["--query_instruction_for_retrieval", "Q: "], "query_prefix", "Q: "),
        (["--passage_instruction_for_retrieval", "P: "], "passage_prefix", "P: "),
        (["--recompute"], "gradient_checkpointing", True),
        (["--lora"], "fine_tune_type", "lora"),
        (["--fine_tune_type", "sft"], "fine_tune_type", "full"),
        (["--fine_tune_type", "bitfit"], "fine_tune_type", "bitfit"),
    ],
)
def test_alias_maps_to_canonical_field(flags, field, expected):
    assert _value(_parse(*flags), field) == expected


def test_defaults():
    model_args, data_args, training_args = _parse()
    assert model_args.pooling is None and model_args.normalize is None  # the folder decides
    assert model_args.model_name_or_path.endswith("model")  # the bundled MiniLM
    assert data_args.train_group_size == 8
    assert (data_args.query_max_len, data_args.passage_max_len) == (32, 128)
    assert training_args.dataloader_drop_last is True
    assert training_args.remove_unused_columns is False


SEED_COMMANDS = {
    "tevatron_v1_4gpu": """python -m torch.distributed.launch --nproc_per_node=4 -m tevatron.driver.train \
  --output_dir model_nq --dataset_name Tevatron/wikipedia-nq --model_name_or_path bert-base-uncased \
  --do_train --save_steps 20000 --fp16 --per_device_train_batch_size 32 --train_n_passages 2 \
  --learning_rate 1e-5 --q_max_len 32 --p_max_len 156 --num_train_epochs 40 --negatives_x_device""",
    "tevatron_v1_gradcache": """CUDA_VISIBLE_DEVICES=0 python -m tevatron.driver.train \
  --output_dir model_nq --dataset_name Tevatron/wikipedia-nq --model_name_or_path bert-base-uncased \
  --do_train --save_steps 20000 --fp16 --per_device_train_batch_size 128 --train_n_passages 2 \
  --learning_rate 1e-5 --q_max_len 32 --p_max_len 156 --num_train_epochs 40 \
  --grad_cache --gc_q_chunk_size 32 --gc_p_chunk_size 16""",
    "tevatron_v1_jax": """python -m tevatron.driver.jax_train \
  --output_dir model_nq --dataset_name Tevatron/wikipedia-nq --model_name_or_path bert-base-uncased \
  --do_train --per_device_train_batch_size 16 --train_n_passages 2 --learning_rate 1e-5 \
  --q_max_len 32 --p_max_len 156 --num_train_epochs 40""",
    "tevatron_v2_mistral_lora": """deepspeed --include localhost:0,1,2,3 --master_port 60000 --module tevatron.retriever.driver.train \
  --deepspeed deepspeed/ds_zero3_config.json --output_dir retriever-mistral \
  --model_name_or_path mistralai/Mistral-7B-v0.1 --lora \
  --lora_target_modules q_proj,k_proj,v_proj,o_proj,down_proj,up_proj,gate_proj \
  --save_steps 50 --dataset_name Tevatron/msmarco-passage-aug \
  --query_prefix "Query: " --passage_prefix "Passage: " --bf16 --pooling eos --append_eos_token \
  --normalize --temperature 0.01 --per_device_train_batch_size 8 --gradient_checkpointing \
  --train_group_size 16 --learning_rate 1e-4 --query_max_len 32 --passage_max_len 128 \
  --num_train_epochs 1 --logging_steps 10 --overwrite_output_dir --gradient_accumulation_steps 4""",
    "tevatron_v2_bert": """deepspeed --include localhost:0,1,2,3 --master_port 60000 --module tevatron.retriever.driver.train \
  --deepspeed deepspeed/ds_zero3_config.json --output_dir retriever-bert \
  --model_name_or_path bert-base-uncased --dataset_name Tevatron/msmarco-passage --bf16 \
  --pooling cls --per_device_train_batch_size 32 --train_group_size 16 --learning_rate 1e-5 \
  --query_max_len 32 --passage_max_len 128 --num_train_epochs 5 --logging_steps 10 --overwrite_output_dir""",
    "paddlenlp": """python train.py --do_train --model_name_or_path rocketqa-zh-base-query-encoder \
  --output_dir ./checkpoints --train_data ./data/dureader_dual.train.jsonl --overwrite_output_dir \
  --fine_tune_type sft --sentence_pooling_method cls --num_train_epochs 3 \
  --per_device_train_batch_size 64 --learning_rate 3e-5 --train_group_size 4 --recompute \
  --passage_max_len 512 --use_matryoshka""",
}
_MODULES = ("tevatron.driver.train", "tevatron.driver.jax_train", "tevatron.retriever.driver.train")


def _train_flags(command: str) -> list[str]:
    """The flags after the launcher and module name (``-m x``, ``--module x`` or ``train.py``)."""
    words = shlex.split(command)
    for index, word in enumerate(words):
        if word in _MODULES or word == "train.py":
            return words[index + 1 :]
    raise AssertionError(f"no module in {command}")


def test_seed_flags_are_stripped_correctly():
    flags = _train_flags(SEED_COMMANDS["tevatron_v1_4gpu"])
    assert flags[:2] == ["--output_dir", "model_nq"] and flags[-1] == "--negatives_x_device"


@pytest.mark.parametrize("name", sorted(SEED_COMMANDS))
def test_seed_command_parses(name):
    model_args, data_args, training_args = parse_train_args(
        _train_flags(SEED_COMMANDS[name]), check_hardware=False
    )
    assert training_args.do_train or name.startswith("tevatron_v2")
    assert training_args.fp16 is False  # dropped without a GPU
    assert not training_args.deepspeed
    assert model_args.model_name_or_path in {
        "bert-base-uncased",
        "mistralai/Mistral-7B-v0.1",
        "rocketqa-zh-base-query-encoder",
    }
    assert data_args.dataset_path  # --dataset_name / --train_data


def test_tevatron_v1_values():
    _, d, t = parse_train_args(
        _train_flags(SEED_COMMANDS["tevatron_v1_4gpu"]), check_hardware=False
    )
    assert d.dataset_path == "Tevatron/wikipedia-nq"
    assert (d.train_group_size, d.query_max_len, d.passage_max_len) == (2, 32, 156)
    assert t.negatives_cross_device and t.per_device_train_batch_size == 32
    assert t.learning_rate == 1e-5 and t.num_train_epochs == 40 and t.save_steps == 20000


def test_gradcache_values():
    _, _, t = parse_train_args(
        _train_flags(SEED_COMMANDS["tevatron_v1_gradcache"]), check_hardware=False
    )
    assert t.grad_cache and (t.gc_q_chunk_size, t.gc_p_chunk_size) == (32, 16)
    assert t.per_device_train_batch_size == 128


def test_mistral_lora_values():
    m, d, t = parse_train_args(
        _train_flags(SEED_COMMANDS["tevatron_v2_mistral_lora"]), check_hardware=False
    )
    assert m.fine_tune_type == "lora"
    assert m.lora_target_modules == "q_proj,k_proj,v_proj,o_proj,down_proj,up_proj,gate_proj"
    assert m.pooling == "last" and m.normalize is True and m.temperature == 0.01
    assert d.append_eos_token and d.dataset_path == "Tevatron/msmarco-passage-aug"
    assert (d.query_prefix, d.passage_prefix) == ("Query: ", "Passage: ")
    assert d.train_group_size == 16 and d.passage_max_len == 128
    assert t.gradient_checkpointing and t.overwrite_output_dir
    assert t.gradient_accumulation_steps == 4 and t.logging_steps == 10


def test_paddlenlp_values():
    m, d, t = parse_train_args(_train_flags(SEED_COMMANDS["paddlenlp"]), check_hardware=False)
    assert m.fine_tune_type == "full" and m.pooling == "cls" and m.use_matryoshka
    assert d.dataset_path == "./data/dureader_dual.train.jsonl"
    assert d.passage_max_len == 512 and d.train_group_size == 4
    assert t.gradient_checkpointing and t.per_device_train_batch_size == 64


def test_paddlenlp_documented_flags():
    m, d, _ = _parse(
        "--max_example_num_per_dataset", "100",
        "--matryoshka_dims", "64,128",
        "--matryoshka_loss_weights", "1,0.5",
        "--use_inbatch_neg", "false",
        "--temperature", "0.02",
        "--margin", "0.2",
        "--negatives_cross_device",
    )  # fmt: skip
    assert d.max_example_num_per_dataset == 100
    assert (m.matryoshka_dims, m.matryoshka_loss_weights) == ("64,128", "1,0.5")
    assert m.use_inbatch_neg is False and m.temperature == 0.02 and m.margin == 0.2


def test_tevatron_documented_flags():
    m, d, _ = _parse(
        "--add_pooler", "--projection_in_dim", "768", "--projection_out_dim", "256",
        "--untie_encoder", "--tokenizer_name", "tok", "--cache_dir", "cache",
        "--dataset_proc_num", "3", "--passage_field_separator", " [SEP] ",
    )  # fmt: skip
    assert (
        m.add_pooler
        and m.untie_encoder
        and (m.projection_in_dim, m.projection_out_dim)
        == (
            768,
            256,
        )
    )
    assert m.tokenizer_name == "tok" and m.cache_dir == "cache"
    assert d.dataset_proc_num == 3 and d.passage_field_separator == " [SEP] "


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_fp16_on_cpu_is_one_line_config_error():
    with pytest.raises(ConfigError) as info:
        _parse("--fp16", check_hardware=True)
    message = str(info.value)
    assert "--fp16" in message and "\n" not in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_deepspeed_on_cpu_is_config_error():
    with pytest.raises(ConfigError, match="--deepspeed"):
        _parse("--deepspeed", "ds.json", check_hardware=True)


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--pooling", "max"], "--pooling 'max'"),
        (["--fine_tune_type", "prefix"], "--fine_tune_type"),
        (["--train_group_size", "0"], "train_group_size"),
        (["--padding_side", "up"], "padding_side"),
        (["--no_such_flag", "1"], "unknown flag"),
    ],
)
def test_bad_flags(flags, match):
    with pytest.raises(ConfigError, match=match):
        _parse(*flags)


def test_output_dir_required():
    with pytest.raises(ConfigError, match="--output_dir"):
        parse_train_args(["--pooling", "cls"], check_hardware=False)


def test_json_and_yaml_config_files(tmp_path):
    values = {"output_dir": "o", "pooling": "mean", "train_group_size": 3, "learning_rate": 2e-5}
    (tmp_path / "a.json").write_text(json.dumps(values))
    (tmp_path / "a.yaml").write_text("\n".join(f"{k}: {v}" for k, v in values.items()))
    for name in ("a.json", "a.yaml"):
        m, d, t = parse_train_args([str(tmp_path / name)], check_hardware=False)
        assert (m.pooling, d.train_group_size, t.learning_rate) == ("mean", 3, 2e-5)
    (tmp_path / "bad.json").write_text(json.dumps({**values, "nope": 1}))
    with pytest.raises(ConfigError, match=r"unknown flag\(s\): nope"):
        parse_train_args([str(tmp_path / "bad.json")])
    (tmp_path / "broken.yaml").write_text("pooling: [mean\n")
    with pytest.raises(ConfigError, match="not a readable YAML file"):
        parse_train_args([str(tmp_path / "broken.yaml")])
