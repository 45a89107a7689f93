"""The peers' own example command lines parse into the settings they mean; ignored flags are
reported exactly once; the README table is the alias table."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from densekit.arguments import parse_train_args
from densekit.commands.encode import build_parser as encode_parser
from densekit.commands.search import build_parser as search_parser
from densekit.compat import flags as peer_flags
from densekit.compat.apply import apply_encode, apply_search
from densekit.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"

# FlagOpen/FlagEmbedding examples/finetune/embedder/encoder_only/base.sh (variables expanded)
FE_ENCODER = """
--model_name_or_path BAAI/bge-large-en-v1.5 --cache_dir /tmp/hf
--train_data ../example_data/retrieval ../example_data/sts/sts.jsonl
    ../example_data/classification-no_in_batch_neg ../example_data/clustering-no_in_batch_neg
--cache_path ~/.cache --train_group_size 8 --query_max_len 512 --passage_max_len 512
--pad_to_multiple_of 8
--query_instruction_for_retrieval 'Represent this sentence for searching relevant passages: '
--query_instruction_format '{}{}' --knowledge_distillation False
--output_dir ./test_encoder_only_base_bge-large-en-v1.5 --overwrite_output_dir
--learning_rate 1e-5 --fp16 --num_train_epochs 4 --per_device_train_batch_size 2
--dataloader_drop_last True --warmup_ratio 0.1 --gradient_checkpointing
--deepspeed ../../ds_stage0.json --logging_steps 1 --save_steps 1000 --negatives_cross_device
--temperature 0.02 --sentence_pooling_method cls --normalize_embeddings True
--kd_loss_type kl_div
"""
# .../decoder_only/base.sh
FE_DECODER = """
--model_name_or_path BAAI/bge-multilingual-gemma2 --cache_dir /tmp/hf --use_lora True
--lora_rank 32 --lora_alpha 64
--target_modules q_proj k_proj v_proj o_proj gate_proj down_proj up_proj
--additional_special_tokens '<instruct>' '<query>' --save_merged_lora_model True
--train_data ../example_data/retrieval ../example_data/sts/sts.jsonl --cache_path ~/.cache
--train_group_size 8 --query_max_len 512 --passage_max_len 512 --pad_to_multiple_of 8
--query_instruction_for_retrieval 'Given a query, retrieve passages that are relevant to the query.'
--query_instruction_format '<instruct>{}\\n<query>{}' --knowledge_distillation False
--output_dir ./out --overwrite_output_dir --learning_rate 1e-4 --fp16 --num_train_epochs 4
--per_device_train_batch_size 2 --dataloader_drop_last True --warmup_ratio 0.1
--gradient_checkpointing --deepspeed ../../ds_stage1.json --logging_steps 1 --save_steps 1000
--negatives_cross_device --temperature 0.02 --sentence_pooling_method last_token
--normalize_embeddings True --kd_loss_type m3_kd_loss
"""
# .../encoder_only/base_same_dataset.sh (the flags that differ from base.sh)
FE_SAME_DATASET = """
--model_name_or_path BAAI/bge-large-en-v1.5 --train_data ../example_data/retrieval
--knowledge_distillation True --same_dataset_within_batch True --small_threshold 0
--drop_threshold 0 --output_dir ./out --kd_loss_type kl_div
"""
# BatsResearch/trove examples/README.md, train_combined_data_sources.py
TROVE_COMBINED = """
--deepspeed 'deepspeed_config.json' --output_dir './model_output/mycontriever'
--model_name_or_path 'facebook/contriever' --encoder_class 'default' --pooling 'mean'
--normalize 'no' --loss 'kl' --temperature '1.0' --trust_remote_code 'true' --group_size 7
--passage_selection_strategy='random' --query_max_len 32 --passage_max_len 128
--report_to 'wandb' --save_strategy 'epoch' --per_device_train_batch_size 16
--learning_rate '1e-5' --num_train_epochs 1 --logging_steps 1 --gradient_accumulation_steps 4
--warmup_ratio '0.05' --dataloader_num_workers 2 --save_only_model true
--trove_logging_mode 'local_main'
"""
TROVE_MISTRAL = """
--output_dir './model_output/mymistral' --model_name_or_path 'mistralai/Mistral-7B-v0.1'
--encoder_class 'default' --pooling 'last_token' --normalize 'yes' --use_peft 'true'
--lora_target_modules q_proj,k_proj,v_proj,o_proj,down_proj,up_proj,gate_proj --loss 'infonce'
--group_size 16 --gradient_checkpointing 'true' --warmup_ratio '0.05'
"""
# texttron/tevatron 0.1.0 examples/example_scifact.md (train)
TEVATRON_V1_SCIFACT = """
--output_dir model_scifact --model_name_or_path bert-base-uncased --save_steps 20000
--dataset_name Tevatron/scifact --fp16 --per_device_train_batch_size 64 --train_n_passages 2
--learning_rate 1e-5 --q_max_len 64 --p_max_len 512 --num_train_epochs 80 --grad_cache
--gc_p_chunk_size 8 --logging_steps 10 --overwrite_output_dir
"""


def _train(flags: str):
    return parse_train_args(shlex.split(flags), check_hardware=False)


@pytest.fixture(autouse=True)
def fresh_notices():
    peer_flags._SHOWN.clear()
    yield
    peer_flags._SHOWN.clear()


def _notes(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "densekit: note:" in line]


def test_flagembedding_encoder_only_line(capsys):
    m, d, t = _train(FE_ENCODER)
    assert d.dataset_path == [
        "../example_data/retrieval",
        "../example_data/sts/sts.jsonl",
        "../example_data/classification-no_in_batch_neg",
        "../example_data/clustering-no_in_batch_neg",
    ]
    assert d.query_prefix == "Represent this sentence for searching relevant passages: "
    assert (m.pooling, m.normalize, m.temperature, m.loss) == ("cls", True, 0.02, "infonce")
    assert t.warmup_steps == 0.1 and t.negatives_cross_device and t.gradient_checkpointing
    notes = _notes(capsys)
    for flag in ("--cache_path", "--kd_loss_type"):
        assert sum(flag in line for line in notes) == 1, notes
    assert any("FlagEmbedding command line recognised" in line for line in notes)


def test_flagembedding_decoder_only_line(capsys):
    m, d, _ = _train(FE_DECODER)
    assert m.fine_tune_type == "lora" and (m.lora_r, m.lora_alpha) == (32, 64)
    assert m.lora_target_modules == "q_proj,k_proj,v_proj,o_proj,gate_proj,down_proj,up_proj"
    assert m.pooling == "last"  # last_token
    expected = "<instruct>Given a query, retrieve passages that are relevant to the query.\n<query>"
    assert d.query_prefix == expected
    notes = _notes(capsys)
    for flag in ("--additional_special_tokens", "--save_merged_lora_model", "--cache_path"):
        assert sum(flag in line for line in notes) == 1, notes
    assert not any("--kd_loss_type" in line and "ignored" not in line for line in notes)


# FlagOpen/FlagEmbedding v1 baai_general_embedding/README.md (the fine-tune line)
FE_V1 = """
--output_dir ./out --model_name_or_path BAAI/bge-large-zh-v1.5 --train_data ./toy.jsonl
--learning_rate 1e-5 --fp16 --num_train_epochs 5 --per_device_train_batch_size 2
--dataloader_drop_last True --normlized True --temperature 0.02 --query_max_len 64
--passage_max_len 256 --train_group_size 2 --negatives_cross_device --logging_steps 10
--save_steps 1000 --query_instruction_for_retrieval ""
"""


def test_flagembedding_v1_line_with_its_normlized_spelling(capsys):
    m, d, _ = _train(FE_V1)
    assert (m.pooling, m.normalize, m.temperature) == ("cls", True, 0.02)
    assert d.dataset_path == "./toy.jsonl" and d.train_group_size == 2
    assert any("FlagEmbedding command line recognised" in line for line in _notes(capsys))
    m, _, _ = _train(FE_V1.replace("--normlized True", "--normlized False"))
    assert m.normalize is False


def test_normlized_disagreeing_with_normalize_is_refused():
    with pytest.raises(ConfigError, match="--normlized disagrees with --normalize"):
        _train("--output_dir o --normalize --normlized False")


def test_every_flagembedding_field_is_accepted():
    """Every field of FlagEmbedding's argument classes (v1's baai_general_embedding/finetune/
    arguments.py, the current AbsArguments + decoder-only base/icl + m3) parses for train."""
    from densekit.arguments import build_parser

    fields = [
        "cache_dir",
        "cache_path",
        "colbert_dim",
        "config_name",
        "drop_threshold",
        "example_passage_max_len",
        "example_query_max_len",
        "fix_encoder",
        "fix_position_embedding",
        "icl_suffix_str",
        "kd_loss_type",
        "knowledge_distillation",
        "lora_alpha",
        "lora_dropout",
        "lora_rank",
        "max_example_num_per_dataset",
        "model_name_or_path",
        "modules_to_save",
        "mrl_dims",
        "negatives_cross_device",
        "normalize_embeddings",
        "normlized",
        "only_merge_lora_model",
        "pad_to_multiple_of",
        "passage_instruction_for_retrieval",
        "passage_instruction_format",
        "passage_max_len",
        "peft_model_path",
        "query_instruction_for_retrieval",
        "query_instruction_format",
        "query_max_len",
        "raw_peft",
        "retrieval_use_examples",
        "same_dataset_within_batch",
        "save_merged_lora_model",
        "self_distill_start_step",
        "sentence_pooling_method",
        "shuffle_ratio",
        "small_threshold",
        "sub_batch_size",
        "target_modules",
        "temperature",
        "token",
        "tokenizer_name",
        "train_data",
        "train_group_size",
        "trust_remote_code",
        "unified_finetuning",
        "use_fast_tokenizer",
        "use_flash_attn",
        "use_inbatch_neg",
        "use_lora",
        "use_mrl",
        "use_self_distill",
        "use_slow_tokenizer",
        "additional_special_tokens",
        "from_peft",
    ]
    options = build_parser()._option_string_actions
    assert [f for f in fields if f"--{f}" not in options] == []


def test_flagembedding_same_dataset_line(capsys):
    m, d, _ = _train(FE_SAME_DATASET)
    assert m.loss == "distill" and d.dataset_path == "../example_data/retrieval"
    notes = _notes(capsys)
    assert sum("--same_dataset_within_batch" in line for line in notes) == 1
    assert not any("--small_threshold" in line or "--kd_loss_type" in line for line in notes)


def test_trove_lines(capsys):
    m, d, t = _train(TROVE_COMBINED)
    assert (m.pooling, m.normalize, m.loss, m.temperature) == ("mean", False, "kl", 1.0)
    assert d.train_group_size == 7 and d.passage_selection_strategy == "random"
    assert t.warmup_steps == 0.05 and t.save_only_model
    notes = _notes(capsys)
    for flag in ("--trove_logging_mode", "--passage_selection_strategy", "--trust_remote_code"):
        assert sum(flag in line for line in notes) == 1, notes
    m, d, t = _train(TROVE_MISTRAL)
    assert m.fine_tune_type == "lora" and m.pooling == "last" and m.normalize is True
    assert (m.lora_r, m.lora_alpha, m.lora_dropout) == (16, 32, 0.05)  # Trove's defaults
    assert d.train_group_size == 16 and t.gradient_checkpointing


def test_tevatron_v1_scifact_line_gets_v1_defaults():
    m, d, t = _train(TEVATRON_V1_SCIFACT)
    assert d.dataset_path == "Tevatron/scifact" and d.train_group_size == 2
    assert (d.query_max_len, d.passage_max_len) == (64, 512)
    assert (m.pooling, m.normalize, m.temperature) == ("cls", False, 1.0)
    assert t.warmup_steps == 0.1  # TevatronTrainingArguments.warmup_ratio default


def test_paddlenlp_gets_its_margin_and_temperature():
    m, _, _ = _train("--output_dir o --train_data t.jsonl --fine_tune_type sft --use_matryoshka")
    assert (m.margin, m.temperature) == (0.2, 0.02)
    m, _, _ = _train("--output_dir o --fine_tune_type sft --margin 0 --temperature 0.05")
    assert (m.margin, m.temperature) == (0.0, 0.05)  # given flags win


@pytest.mark.parametrize(
    ("flags", "field", "expected"),
    [
        ("--warmup_ratio 1.0", "warmup_steps", 1 - 1e-9),
        ("--evaluation_strategy steps --eval_steps 5", "eval_strategy", "steps"),
        ("--per_gpu_train_batch_size 3", "per_device_train_batch_size", 3),
        ("--no_cuda", "use_cpu", True),
        ("--adafactor", "optim", "adafactor"),
        ("--num_proc 3", "dataset_proc_num", 3),
        ("--use_mrl True --mrl_dims 8 16", "matryoshka_dims", "8,16"),
        ("--peft_model_path ad", "lora_name_or_path", "ad"),
        ("--dataset_name Tevatron/msmarco-passage --dataset_split dev", "dataset_path",
         "Tevatron/msmarco-passage:dev"),
        ("--dataset_name json --dataset_path x.jsonl", "dataset_path", "x.jsonl"),
        ("--dataset_name Tevatron/wikipedia-nq/test", "dataset_path", "Tevatron/wikipedia-nq:test"),
        ("--corpus_name Tevatron/msmarco-corpus --corpus_split train", "corpus_path",
         "Tevatron/msmarco-corpus:train"),
        ("--pooling first_token", "pooling", "cls"),
    ],
)  # fmt: skip
def test_mapped_train_flags(flags, field, expected):
    values = {}
    for args in _train(f"--output_dir o {flags}"):
        values.update(vars(args))
    assert values[field] == expected


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        ("--train_yaml t.yaml", "--dataset_path"),
        ("--add_special_tokens False", "special tokens"),
        ("--encoder_class contriever", "default encoder"),
        ("--query_instruction_for_retrieval Q --query_instruction_format '{}: {} ok'", "last"),
        ("--kd_loss_type mse", "kl_div"),
        ("--warmup_ratio 0.1 --warmup_steps 10", "not both"),
        ("--knowledge_distillation True --loss infonce", "disagrees"),
    ],
)
def test_refused_train_flags(flags, match):
    with pytest.raises(ConfigError, match=match):
        _train(f"--output_dir o {flags}")


def test_trust_remote_code_refuses_a_model_with_its_own_code(tmp_path, tiny_model, capsys):
    _train(f"--output_dir o --model_name_or_path {tiny_model} --trust_remote_code true")
    assert sum("--trust_remote_code" in line for line in _notes(capsys)) == 1
    (tmp_path / "config.json").write_text('{"auto_map": {"AutoModel": "m.M"}}')
    with pytest.raises(ConfigError, match="needs its own code"):
        _train(f"--output_dir o --model_name_or_path {tmp_path} --trust_remote_code true")


# texttron/tevatron README (v2) and docs/encoding.md, docs/retrieval.md (v1, 0.1.0)
TEVATRON_V2_ENCODE = """
--output_dir temp --model_name_or_path mistralai/Mistral-7B-v0.1
--lora_name_or_path retriever-mistral --lora --query_prefix "Query: "
--passage_prefix "Passage: " --bf16 --pooling eos --append_eos_token --normalize
--encode_is_query --per_device_eval_batch_size 128 --query_max_len 32 --passage_max_len 156
--dataset_name Tevatron/msmarco-passage --dataset_split dev
--encode_output_path emb/query-dev.pkl
"""
TEVATRON_V1_ENCODE = """
--output_dir=temp --model_name_or_path model_nq --fp16 --per_device_eval_batch_size 156
--dataset_name Tevatron/wikipedia-nq/test --encoded_save_path query.pkl --q_max_len 32
--encode_is_qry
"""


def _encode_args(flags: str):
    args = encode_parser(train_flags=True).parse_args(shlex.split(flags))
    apply_encode(args)
    return args


def test_tevatron_encode_lines(capsys):
    args = _encode_args(TEVATRON_V2_ENCODE)
    assert args.dataset_path == "Tevatron/msmarco-passage:dev" and args.encode_is_query
    assert args.lora_name_or_path == "retriever-mistral" and args.batch_size == 128
    assert args.encode_output_path == "emb/query-dev.pkl" and args.pooling == "eos"
    notes = _notes(capsys)
    assert sum("--output_dir" in line for line in notes) == 1
    assert sum("--lora " in line for line in notes) == 1
    args = _encode_args(TEVATRON_V1_ENCODE)
    assert args.dataset_path == "Tevatron/wikipedia-nq:test" and args.encode_is_query
    assert args.encode_output_path == "query.pkl" and args.query_max_len == 32 and args.fp16


def test_encode_reports_training_flags_once(capsys):
    args = _encode_args(
        "--dataset_path c.jsonl --encode_output_path e --learning_rate 1e-5 --warmup_ratio 0.1 "
        "--train_group_size 4 --temperature 0.01 --dataset_proc_num 4 --padding_side left"
    )
    assert args.dataset_path == "c.jsonl"
    notes = _notes(capsys)
    for flag in ("learning_rate", "warmup_ratio", "train_group_size", "temperature",
                 "dataset_proc_num", "padding_side"):  # fmt: skip
        assert sum(f"--{flag} " in line for line in notes) == 1, (flag, notes)


def test_encode_requires_data_and_output():
    with pytest.raises(ConfigError, match="--dataset_path is required"):
        _encode_args("--encode_output_path e")
    with pytest.raises(ConfigError, match="--encode_output_path is required"):
        _encode_args("--encode_in_path c.jsonl")


def test_tevatron_search_lines(tmp_path, capsys):
    for name in ("q", "c"):
        (tmp_path / name).mkdir()
    line = (
        f"--query_reps {tmp_path}/q --passage_reps {tmp_path}/c --depth 100 --batch_size -1 "
        "--save_text --save_ranking_to rank.txt --quiet --shard_search --cpu_search --gpu_float32"
    )
    args = search_parser().parse_args(shlex.split(line))
    apply_search(args)
    assert args.ranking_format == "tevatron" and args.shard_by_shard
    assert args.batch_size > 10**9
    notes = _notes(capsys)
    assert sum("--gpu_float32" in line for line in notes) == 1
    assert sum("--cpu_search" in line for line in notes) == 1


def test_every_table_flag_parses_for_its_commands(capsys):
    samples = {"bool": "True", "int": "1", "float": "0.5", "str": "x", "list": "a"}
    from densekit.commands.mine import build_parser as mine_parser

    parsers = {"encode": encode_parser(), "search": search_parser(), "mine": mine_parser()}
    for flag in peer_flags.FLAGS:
        value = str(flag.honoured[0]) if flag.honoured else samples[flag.kind]
        for command in flag.commands:
            words = [f"--{flag.name}"] + ([] if flag.kind == "bool" else [value])
            if command == "train":
                from densekit.arguments import build_parser

                _, unknown = build_parser().parse_known_args(["--output_dir", "o", *words])
            else:
                required = ["--query_reps", "q", "--save_ranking_to", "r"]
                words = [*required, *words] if command == "search" else words
                _, unknown = parsers[command].parse_known_args(words)
            assert not unknown, (flag.name, command)


def test_readme_table_is_the_alias_table():
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- peer-flags:start -->\n(.*?)\n<!-- peer-flags:end -->", text, re.S)
    assert found, "README lacks the generated peer flag table"
    assert found.group(1) == peer_flags.markdown_table()


def test_peer_names_in_a_config_file(tmp_path):
    (tmp_path / "fe.yaml").write_text(
        "output_dir: o\ntrain_data: [a.jsonl, b.jsonl]\nwarmup_ratio: 0.1\n"
        "normalize_embeddings: true\nkd_loss_type: kl_div\nknowledge_distillation: true\n"
    )
    m, d, t = parse_train_args([str(tmp_path / "fe.yaml")], check_hardware=False)
    assert d.dataset_path == ["a.jsonl", "b.jsonl"] and t.warmup_steps == 0.1
    assert m.normalize is True and m.loss == "distill" and m.temperature == 0.02
