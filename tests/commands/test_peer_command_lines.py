"""The peers' own train / encode / search lines run end to end (model and data swapped for tiny
local ones, GPU-only flags dropped, 2 steps) and give what densekit's own lines give."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_beir, write_jsonl

from densekit.commands import main as cli
from densekit.data.readers import load_train
from densekit.data.runs import read_run
from densekit.modeling.encoder import load_tokenizer
from densekit.retrieval.embeddings import load_embeddings

SMALL = ["--max_steps", "2", "--report_to", "none"]


@pytest.fixture(scope="module")
def beir(tmp_path_factory) -> Path:
    return make_beir(tmp_path_factory.mktemp("peer") / "beir", dev=False, test=False)


def _fe_row(i: int, scores: bool) -> dict:
    row = {
        "query": f"question {i} about topic {i % 3}",
        "pos": [f"answer about topic {i % 3} for {i}"],
        "neg": [f"other text {i} {j}" for j in range(3)],
        "prompt": "Represent this sentence for searching relevant passages: ",
        "type": "normal",
    }
    if scores:
        row.update(pos_scores=[0.9], neg_scores=[0.1, 0.2, 0.3])
    return row


def test_flagembedding_encoder_only_example(tiny_model, tmp_path):
    """FlagEmbedding's examples/finetune/embedder/encoder_only/base.sh, with its data layout:
    two folders of files, a loose file, a folder of files meant for the same-dataset mode."""
    data = tmp_path / "example_data"
    write_jsonl(data / "retrieval" / "msmarco.jsonl", [_fe_row(i, True) for i in range(6)])
    write_jsonl(data / "retrieval" / "nq.jsonl", [_fe_row(i, True) for i in range(6, 10)])
    (data / "retrieval" / "README.md").write_text("not data")
    write_jsonl(data / "sts" / "sts.jsonl", [_fe_row(i, False) for i in range(10, 13)])
    no_neg = data / "classification-no_in_batch_neg"
    write_jsonl(no_neg / "Banking77Classification.jsonl", [_fe_row(i, False) for i in range(13, 16)])  # fmt: skip
    train_data = [str(data / "retrieval"), str(data / "sts" / "sts.jsonl"), str(no_neg)]
    line = f"""
        --model_name_or_path {tiny_model} --cache_dir {tmp_path / "hf"}
        --train_data {" ".join(train_data)} --cache_path {tmp_path / "cache"}
        --train_group_size 4 --query_max_len 32 --passage_max_len 32 --pad_to_multiple_of 8
        --query_instruction_for_retrieval 'Represent this sentence for searching relevant passages: '
        --query_instruction_format '{{}}{{}}' --knowledge_distillation False
        --output_dir {tmp_path / "out"} --overwrite_output_dir --learning_rate 1e-5
        --num_train_epochs 4 --per_device_train_batch_size 2 --dataloader_drop_last True
        --warmup_ratio 0.1 --gradient_checkpointing --logging_steps 1 --save_steps 1000
        --negatives_cross_device --temperature 0.02 --sentence_pooling_method cls
        --normalize_embeddings True --kd_loss_type kl_div
    """
    assert cli(["train", *shlex.split(line), *SMALL]) == 0
    assert (tmp_path / "out" / "densekit_config.json").is_file()
    assert len(load_train(train_data)) == 16  # every data file of the folders, README skipped
    settings = (tmp_path / "out" / "densekit_config.json").read_text()
    assert '"temperature": 0.02' in settings and '"normalize": true' in settings


def _canonical_run(model: str, beir: Path, out: Path, *flags: str) -> Path:
    for data, name, extra in ((beir / "corpus.jsonl", "c", []), (beir / "queries.jsonl", "q", ["--encode_is_query"])):  # fmt: skip
        argv = ["encode", "--model_name_or_path", model, "--dataset_path", str(data)]
        assert cli([*argv, "--encode_output_path", str(out / name), *extra, *flags]) == 0
    run = out / "run.trec"
    argv = ["search", "--query_reps", str(out / "q"), "--passage_reps", str(out / "c")]
    assert cli([*argv, "--depth", "10", "--save_ranking_to", str(run)]) == 0
    return run


def test_tevatron_v2_encode_and_search_lines(tiny_decoder, beir, tmp_path):
    """The README's Mistral lines (query, sharded corpus, search --save_text). Torch and FAISS
    both ways, batched otherwise (other matmul shapes, so other CPU kernels): scores of unit
    vectors (at most 1) agree to 1e-6, relatively and near zero."""
    model = tiny_decoder("llama")
    common = f"""
        --output_dir temp --model_name_or_path {model} --query_prefix "Query: "
        --passage_prefix "Passage: " --pooling eos --append_eos_token --normalize
        --per_device_eval_batch_size 128 --query_max_len 32 --passage_max_len 156
        --dataset_name json
    """
    emb = tmp_path / "emb"
    query = f"--encode_is_query --dataset_path {beir / 'queries.jsonl'} --encode_output_path {emb / 'query-dev.pkl'}"  # fmt: skip
    assert cli(["encode", *shlex.split(common + query)]) == 0
    for s in range(2):
        corpus = f"--dataset_path {beir / 'corpus.jsonl'} --dataset_number_of_shards 2 --dataset_shard_index {s} --encode_output_path {emb / f'corpus.{s}.pkl'}"  # fmt: skip
        assert cli(["encode", *shlex.split(common + corpus)]) == 0
    run = tmp_path / "run.dev.txt"
    search = f"--query_reps {emb / 'query-dev.pkl'} --passage_reps {emb}/corpus*.pkl --depth 10 --batch_size 64 --save_text --save_ranking_to {run}"  # fmt: skip
    assert cli(["search", *shlex.split(search)]) == 0
    first = run.read_text().splitlines()[0].split("\t")
    assert len(first) == 3 and "." in first[2]  # qid, docid, score
    own = _canonical_run(
        model, beir, tmp_path / "own", "--query_prefix", "Query: ", "--passage_prefix",
        "Passage: ", "--pooling", "last", "--append_eos_token", "--normalize",
        "--passage_max_len", "156",
    )  # fmt: skip
    mine, theirs = read_run(own), read_run(run)
    assert {q: list(d) for q, d in mine.items()} == {q: list(d) for q, d in theirs.items()}
    for qid in mine:
        got, want = list(mine[qid].values()), list(theirs[qid].values())
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_tevatron_v1_encode_and_faiss_retriever_lines(tiny_model, beir, tmp_path):
    """docs/encoding.md and docs/retrieval.md of Tevatron 0.1.0, custom data (--encode_in_path)."""
    emb = tmp_path / "v1"
    common = f"--output_dir=temp --model_name_or_path {tiny_model} --per_device_eval_batch_size 156"
    corpus = f" --p_max_len 128 --encode_in_path {beir / 'corpus.jsonl'} --encoded_save_path {emb / 'corpus_emb.pkl'}"  # fmt: skip
    query = f" --encode_in_path {beir / 'queries.jsonl'} --encoded_save_path {emb / 'query.pkl'} --q_max_len 32 --encode_is_qry"  # fmt: skip
    assert cli(["encode", *shlex.split(common + corpus)]) == 0
    assert cli(["encode", *shlex.split(common + query)]) == 0
    run = tmp_path / "rank.txt"
    line = f"--query_reps {emb / 'query.pkl'} --passage_reps {emb}/corpus_emb*.pkl --depth 10 --batch_size -1 --save_text --save_ranking_to {run}"  # fmt: skip
    assert cli(["search", *shlex.split(line)]) == 0
    assert read_run(run) == read_run(_canonical_run(tiny_model, beir, tmp_path / "own"))


def test_tevatron_v2_lora_adapter_is_applied(tiny_decoder, beir, tmp_path):
    """--lora_name_or_path: a peft adapter (non-zero B, so it changes the vectors) over the base.
    densekit's encode against peft's forward: other code paths (and CPU kernels) on unnormalized
    hidden states, so 1e-4 of their largest entry."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    model = tiny_decoder("llama")
    torch.manual_seed(1)
    peft_model = get_peft_model(
        AutoModel.from_pretrained(model),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    line = f"--model_name_or_path {model} --lora_name_or_path {tmp_path / 'adapter'} --lora --pooling eos --encode_is_query --dataset_path {beir / 'queries.jsonl'} --encode_output_path {tmp_path / 'q'}"  # fmt: skip
    assert cli(["encode", *shlex.split(line)]) == 0
    ids, vectors = load_embeddings(tmp_path / "q")
    tokenizer = load_tokenizer(model)
    text = "what about kinase 0"
    assert ids[0] == "q0"
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        hidden = peft_model.eval()(**batch).last_hidden_state[0, -1]
        plain = AutoModel.from_pretrained(model).eval()(**batch).last_hidden_state[0, -1]
    scale = max(1.0, hidden.abs().max().item())
    np.testing.assert_allclose(vectors[0], hidden.numpy(), atol=1e-4 * scale)
    assert not np.allclose(vectors[0], plain.numpy(), atol=1e-3)
