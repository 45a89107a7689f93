"""Trove's example scripts (examples/*.py of BatsResearch/trove) run against densekit with only
the import line changed: ``from trove import (...)`` -> ``from densekit import (...)``; an import
of a Trove module path (``trove.modeling.encoder_default``) changes ``trove`` to
``densekit.compat.trove`` (train_with_task_instructions.py, run with both forms below).

The scripts below follow Trove's examples call for call (arguments parsed by HfArgumentParser
into the three argument classes, BiEncoderRetriever.from_model_args, MaterializedQRelConfig,
BinaryDataset / MultiLevelDataset with num_proc, RetrievalCollator(data_args=...),
RetrievalTrainer(tokenizer=...), IRMetrics, RetrievalEvaluator); the hub data paths are
replaced by tiny local files and the command lines are Trove's README lines with the model,
GPU flags and step counts swapped.
"""

from __future__ import annotations

import json
import random
import runpy
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
import torch
from conftest import make_beir, write_jsonl

HEAD = """
from transformers import AutoTokenizer, HfArgumentParser

from densekit import (
    BiEncoderRetriever, BinaryDataset, DataArguments, EvaluationArguments, IRMetrics,
    MaterializedQRelConfig, ModelArguments, MultiLevelDataset, RetrievalCollator,
    RetrievalEvaluator, RetrievalTrainer, RetrievalTrainingArguments,
)


def tokenizer_and_model(args, model_args, training_args=None):
    with args.main_process_first():
        tokenizer = AutoTokenizer.from_pretrained(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = tokenizer.eos_token_id
    tokenizer.padding_side = "right"
    if training_args is None:
        return tokenizer, BiEncoderRetriever.from_model_args(args=model_args)
    return tokenizer, BiEncoderRetriever.from_model_args(args=model_args, training_args=training_args)
"""

TRAIN_SIMPLE = (
    HEAD
    + """
def main():
    parser = HfArgumentParser((RetrievalTrainingArguments, ModelArguments, DataArguments))
    train_args, model_args, data_args = parser.parse_args_into_dataclasses()
    tokenizer, model = tokenizer_and_model(train_args, model_args, train_args)
    data_args.dataset_name = "msmarco"
    files = dict(qrel_path="{mined}", corpus_path="{corpus}", query_path="{queries}")
    with train_args.main_process_first():
        pos_conf = MaterializedQRelConfig(min_score=1, **files)
        neg_conf = MaterializedQRelConfig(max_score=1, **files)
        dataset = BinaryDataset(
            data_args=data_args, positive_configs=[pos_conf], negative_configs=[neg_conf],
            format_query=model.format_query, format_passage=model.format_passage, num_proc=8,
        )
    data_collator = RetrievalCollator(
        data_args=data_args, tokenizer=tokenizer, append_eos=model.append_eos_token
    )
    trainer = RetrievalTrainer(
        args=train_args, model=model, tokenizer=tokenizer, data_collator=data_collator,
        train_dataset=dataset,
    )
    trainer.train()
    trainer.save_model()


if __name__ == "__main__":
    main()
"""
)

TRAIN_APPROX_METRICS = (
    HEAD
    + """
def main():
    parser = HfArgumentParser((RetrievalTrainingArguments, ModelArguments, DataArguments))
    train_args, model_args, data_args = parser.parse_args_into_dataclasses()
    tokenizer, model = tokenizer_and_model(train_args, model_args, train_args)
    data_args.dataset_name = "msmarco"
    with train_args.main_process_first():
        pos_conf = MaterializedQRelConfig(
            qrel_path="{mined}", corpus_path="{corpus}", query_path="{queries}", min_score=1
        )
        neg_conf = MaterializedQRelConfig(
            qrel_path="{mined}", corpus_path="{corpus}", query_path="{queries}", max_score=1
        )
        dataset = BinaryDataset(
            data_args=data_args, positive_configs=[pos_conf], negative_configs=[neg_conf],
            format_query=model.format_query, format_passage=model.format_passage, num_proc=8,
        )
    data_collator = RetrievalCollator(
        data_args=data_args, tokenizer=tokenizer, append_eos=model.append_eos_token
    )
    with train_args.main_process_first():
        eval_mqrel = MaterializedQRelConfig(
            corpus_path="{corpus}", query_path="{queries}", qrel_path="{eval_qrels}"
        )
        eval_dataset = MultiLevelDataset(
            data_args=data_args, format_query=model.format_query,
            format_passage=model.format_passage, qrel_config=eval_mqrel,
            data_args_overrides={{"passage_selection_strategy": "most_relevant", "group_size": 100}},
            num_proc=8,
        )
    trainer = RetrievalTrainer(
        args=train_args, model=model, tokenizer=tokenizer, data_collator=data_collator,
        train_dataset=dataset, eval_dataset=eval_dataset,
        compute_metrics=IRMetrics(k_values=[1, 10, 100]),
    )
    trainer.train(ignore_keys_for_eval=["query", "passage"])
    trainer.save_model()
    Path("{out}").write_text(json.dumps(trainer.state.log_history))


if __name__ == "__main__":
    import json
    from pathlib import Path
    main()
"""
)

TRAIN_COMBINED = (
    HEAD
    + """
def main():
    parser = HfArgumentParser((RetrievalTrainingArguments, ModelArguments, DataArguments))
    train_args, model_args, data_args = parser.parse_args_into_dataclasses()
    tokenizer, model = tokenizer_and_model(train_args, model_args, train_args)
    data_args.dataset_name = "msmarco"
    with train_args.main_process_first():
        real_pos = MaterializedQRelConfig(
            corpus_path="{corpus}", query_path="{queries}", qrel_path="{qrels}",
            score_transform=3, min_score=1,
        )
        real_mined_hn = MaterializedQRelConfig(
            corpus_path="{corpus}", query_path="{queries}", qrel_path="{mined_neg}",
            score_transform=1, group_random_k=2,
        )
        synth_data = MaterializedQRelConfig(
            query_path="{queries}", corpus_path="{synth_corpus}", qrel_path="{synth_qrels}"
        )
    with train_args.main_process_first():
        dataset = MultiLevelDataset(
            data_args=data_args, qrel_config=[real_pos, real_mined_hn, synth_data],
            format_query=model.format_query, format_passage=model.format_passage, num_proc=8,
        )
    data_collator = RetrievalCollator(
        data_args=data_args, tokenizer=tokenizer, append_eos=model.append_eos_token
    )
    trainer = RetrievalTrainer(
        args=train_args, model=model, tokenizer=tokenizer, data_collator=data_collator,
        train_dataset=dataset,
    )
    Path("{out}").write_text(type(trainer.loss_fn).__name__ + " " + json.dumps(dataset[0]["labels"]))
    trainer.train()
    trainer.save_model()


if __name__ == "__main__":
    import json
    from pathlib import Path
    main()
"""
)

INFERENCE = (
    HEAD
    + """
from dataclasses import dataclass


@dataclass
class ScriptArguments:
    job: str

    def __post_init__(self):
        assert self.job in ["evaluate", "mine_hn"]


def main():
    parser = HfArgumentParser((EvaluationArguments, ModelArguments, DataArguments, ScriptArguments))
    eval_args, model_args, data_args, script_args = parser.parse_args_into_dataclasses()
    tokenizer, model = tokenizer_and_model(eval_args, model_args)
    data_args.dataset_name = "scifact"
    qrel_path = "{eval_qrels}" if script_args.job == "evaluate" else "{qrels}"
    with eval_args.main_process_first():
        mqrel_conf = MaterializedQRelConfig(
            qrel_path=qrel_path, corpus_path="{corpus}", query_path="{queries}"
        )
        dataset = MultiLevelDataset(
            data_args=data_args, format_query=model.format_query,
            format_passage=model.format_passage, qrel_config=mqrel_conf, num_proc=8,
        )
    data_collator = RetrievalCollator(
        data_args=data_args, tokenizer=tokenizer, append_eos=model.append_eos_token
    )
    evaluator = RetrievalEvaluator(
        args=eval_args, model=model, tokenizer=tokenizer, data_collator=data_collator,
        eval_dataset=dataset,
    )
    if script_args.job == "evaluate":
        evaluator.evaluate()
    else:
        evaluator.mine_hard_negatives()


if __name__ == "__main__":
    main()
"""
)

TASK_INSTRUCTIONS_HEAD = """
from typing import Dict, Optional

from transformers import AutoTokenizer, HfArgumentParser

from {package} import (
    BiEncoderRetriever,
    BinaryDataset,
    DataArguments,
    MaterializedQRelConfig,
    ModelArguments,
    RetrievalCollator,
    RetrievalTrainer,
    RetrievalTrainingArguments,
)
from densekit.compat.trove.modeling.encoder_default import DefaultEncoder
"""

# examples/train_with_task_instructions.py, its instruction table cut to the names used.
TRAIN_WITH_TASK_INSTRUCTIONS = """

def create_task_to_instruct_mapping() -> Dict[str, str]:
    task_name_to_instruct: Dict[str, str] = {{
        "MSMARCO": "Given a web search query, retrieve relevant passages that answer the query",
        "SciFact": "Given a scientific claim, retrieve documents that support or refute the claim",
    }}
    task_name_to_instruct.update({{k.lower(): v for k, v in task_name_to_instruct.items()}})
    return task_name_to_instruct


class EncoderWithTaskInstructions(DefaultEncoder):
    _alias = "encoder_with_task_instructs"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.task2instruct_mapping = create_task_to_instruct_mapping()

    def get_task_instruction(self, task_name: str) -> str:
        task_name = task_name.lower().replace("_", "-")
        if task_name.startswith("cqadupstack"):
            task_name = "cqadupstack"
        ins = self.task2instruct_mapping[task_name]
        ins = ins.strip()
        return ins

    def format_query(self, text: str, dataset: str, **kwargs) -> str:
        task_description = self.get_task_instruction(task_name=dataset)
        query_fmt = f"Instruct: {{task_description}}\\nQuery: {{text.strip()}}"
        return query_fmt

    def format_passage(self, text: str, title: Optional[str] = None, **kwargs) -> str:
        if title is not None:
            text = f"{{title.strip()}} {{text.strip()}}"
        text = text.strip()
        return text


def main():
    parser = HfArgumentParser((RetrievalTrainingArguments, ModelArguments, DataArguments))
    train_args, model_args, data_args = parser.parse_args_into_dataclasses()
    with train_args.main_process_first():
        tokenizer = AutoTokenizer.from_pretrained(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code,
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = tokenizer.eos_token_id
    tokenizer.padding_side = "right"
    model = BiEncoderRetriever.from_model_args(args=model_args, training_args=train_args)
    data_args.dataset_name = "msmarco"
    files = dict(qrel_path="{mined}", corpus_path="{corpus}", query_path="{queries}")
    with train_args.main_process_first():
        pos_conf = MaterializedQRelConfig(min_score=1, **files)
        neg_conf = MaterializedQRelConfig(max_score=1, **files)
        dataset = BinaryDataset(
            data_args=data_args, positive_configs=[pos_conf], negative_configs=[neg_conf],
            format_query=model.format_query, format_passage=model.format_passage, num_proc=8,
        )
    data_collator = RetrievalCollator(
        data_args=data_args, tokenizer=tokenizer, append_eos=model.append_eos_token,
    )
    trainer = RetrievalTrainer(
        args=train_args, model=model, tokenizer=tokenizer, data_collator=data_collator,
        train_dataset=dataset,
    )
    Path("{out}").write_text(type(model).__name__ + "\\t" + dataset[0]["query"])
    trainer.train()
    trainer.save_model()


if __name__ == "__main__":
    from pathlib import Path
    main()
"""
# examples/README.md's line for it: model swapped (a tiny Llama), deepspeed dropped, steps small.
TASK_LINE = """--output_dir {out} --model_name_or_path {model}
--encoder_class 'encoder_with_task_instructs' --pooling 'last_token' --normalize 'yes'
--use_peft 'true' --lora_target_modules q_proj,k_proj,v_proj,o_proj,down_proj,up_proj,gate_proj
--loss 'infonce' --temperature '1.0' --trust_remote_code 'true' --group_size 4
--query_max_len 32 --passage_max_len 64 --report_to 'none' --save_strategy 'epoch'
--per_device_train_batch_size 4 --learning_rate '1e-5' --max_steps 2 --logging_steps 1
--warmup_ratio '0.05' --dataloader_num_workers 0 --save_only_model true
--trove_logging_mode 'local_main'"""

# Trove's README lines: deepspeed dropped, model swapped, batch/steps small, wandb -> none.
TRAIN_LINE = """--output_dir {out} --model_name_or_path {model} --encoder_class 'default'
--pooling 'mean' --normalize 'no' --loss '{loss}' --temperature '1.0' --trust_remote_code 'true'
--group_size {group} --query_max_len 32 --passage_max_len 128 --report_to 'none'
--save_strategy 'epoch' --per_device_train_batch_size 4 --learning_rate '1e-5'
--num_train_epochs 1 --max_steps 2 --logging_steps 1 --gradient_accumulation_steps 1
--warmup_ratio '0.05' --dataloader_num_workers 0 --save_only_model true
--trove_logging_mode 'local_main'"""
EVAL_FLAGS = """--eval_strategy steps --eval_steps 1 --per_device_eval_batch_size 16
--eval_on_start 'false' --batch_eval_metrics 'true' --label_names 'label'"""
INFERENCE_LINE = """--job '{job}' --output_dir {out} --model_name_or_path {model}
--encoder_class 'default' --pooling 'mean' --normalize 'no' --query_max_len 64
--passage_max_len 64 --per_device_eval_batch_size 128 --precompute_corpus_embs 'true'
--per_device_matmul_batch_size 40960 --cleanup_temp_artifacts 'false'
--dataloader_num_workers 0 --broadcast_output 'false' --trove_logging_mode 'local_main'
--pbar_mode 'main' --print_mode 'main' --fair_sharding 'false' --report_to 'none'
--save_eval_topk_logits 'false' {extra}"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    """BEIR files, a Tevatron-style mined qrel jsonl (positives 1, negatives 0), a negatives
    file, and a synthetic corpus with graded qrels."""
    root = tmp_path_factory.mktemp("trove")
    beir = make_beir(root / "beir", dev=True, test=False)
    rng = random.Random(0)
    mined, negatives = [], []
    for i in range(24):
        negs = rng.sample([f"d{j}" for j in range(80) if j not in (i, i + 40)], 4)
        mined.append({"qid": f"q{i}", "docid": [f"d{i}", f"d{i + 40}", *negs], "score": [1, 1, 0, 0, 0, 0]})  # fmt: skip
        negatives.append({"qid": f"q{i}", "docid": negs, "score": [0.0] * 4})
    write_jsonl(root / "mined.jsonl", mined)
    write_jsonl(root / "mined_neg.jsonl", negatives)
    write_jsonl(root / "synth" / "corpus.jsonl", [{"_id": f"s{i}", "title": "", "text": f"synthetic {i}"} for i in range(48)])  # fmt: skip
    synth = "".join(f"q{i % 24}\ts{i}\t{i % 4}\n" for i in range(48))
    (root / "synth" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + synth)
    return {
        "corpus": str(beir / "corpus.jsonl"),
        "queries": str(beir / "queries.jsonl"),
        "qrels": str(beir / "qrels" / "train.tsv"),
        "eval_qrels": str(beir / "qrels" / "dev.tsv"),
        "mined": str(root / "mined.jsonl"),
        "mined_neg": str(root / "mined_neg.jsonl"),
        "synth_corpus": str(root / "synth" / "corpus.jsonl"),
        "synth_qrels": str(root / "synth" / "train.tsv"),
    }


def _run(script: str, files: dict, line: str, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "script.py"
    path.write_text(script.format(**files, out=tmp_path / "out.txt"))
    monkeypatch.setattr(sys, "argv", [str(path), *shlex.split(line)])
    runpy.run_path(str(path), run_name="__main__")


def test_train_simple(data, tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "model_output"
    line = TRAIN_LINE.format(out=out, model=tiny_model, loss="infonce", group=4)
    _run(TRAIN_SIMPLE, data, line, tmp_path, monkeypatch)
    assert (out / "densekit_config.json").is_file() and (out / "model.safetensors").is_file()


def test_train_report_approx_metrics(data, tiny_model, tmp_path, monkeypatch):
    line = TRAIN_LINE.format(out=tmp_path / "m", model=tiny_model, loss="infonce", group=4)
    _run(TRAIN_APPROX_METRICS, data, f"{line} {EVAL_FLAGS}", tmp_path, monkeypatch)
    history = json.loads((tmp_path / "out.txt").read_text())
    evals = [h for h in history if "eval_ndcg@10" in h]
    assert len(evals) == 2 and all(0 <= h["eval_recall@100"] <= 1 for h in evals)
    assert all(h["eval_recall@100"] == 1.0 for h in evals)  # a 100-passage group holds them all


def test_train_combined_data_sources_trains_with_kl(data, tiny_model, tmp_path, monkeypatch):
    line = TRAIN_LINE.format(out=tmp_path / "m", model=tiny_model, loss="kl", group=7)
    line += " --passage_selection_strategy='random'"
    _run(TRAIN_COMBINED, data, line, tmp_path, monkeypatch)
    loss, labels = (tmp_path / "out.txt").read_text().split(" ", 1)
    assert loss == "KLLoss"  # Trove's loss name honoured, not a silent InfoNCE
    labels = json.loads(labels)
    assert len(labels) == 7 and 3.0 in labels  # real positives transformed to 3
    assert (tmp_path / "m" / "densekit_config.json").is_file()


def _hand_run(model_path: str, data: dict, qids: list[str]) -> dict[str, dict[str, float]]:
    """Scores computed here: mean pooling, no normalization, one text at a time."""
    from densekit.modeling.encoder import DenseEncoder, load_tokenizer

    encoder = DenseEncoder.from_pretrained(model_path, pooling="mean", normalize=False).eval()
    tokenizer = load_tokenizer(model_path)
    docs = [json.loads(line) for line in Path(data["corpus"]).read_text().splitlines()]
    queries = {
        q["_id"]: q["text"] for q in map(json.loads, Path(data["queries"]).read_text().splitlines())
    }

    def vec(text: str, is_query: bool) -> np.ndarray:
        batch = tokenizer([text], truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            return encoder.encode(dict(batch), is_query)[0].numpy()

    matrix = np.stack([vec(f"{d['title']} {d['text']}", False) for d in docs])
    return {
        q: {d["_id"]: float(s) for d, s in zip(docs, matrix @ vec(queries[q], True), strict=True)}
        for q in qids
    }


def test_inference_evaluate_and_mine(data, tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "eval_output"
    line = INFERENCE_LINE.format(job="evaluate", out=out, model=tiny_model, extra="")
    _run(INFERENCE, data, line, tmp_path, monkeypatch)
    metrics = json.loads((out / "evaluation_results" / "metrics.json").read_text())
    qrels: dict[str, dict[str, int]] = {}
    for row in Path(data["eval_qrels"]).read_text().splitlines()[1:]:
        q, d, s = row.split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    hand = _hand_run(tiny_model, data, sorted(qrels))
    top = {q: dict(sorted(h.items(), key=lambda x: -x[1])[:100]) for q, h in hand.items()}
    expected = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(top)
    assert metrics["ndcg@10"] == pytest.approx(np.mean([v["ndcg_cut_10"] for v in expected.values()]), rel=1e-6)  # fmt: skip
    assert metrics["recall@100"] == pytest.approx(1.0)

    mined_out = tmp_path / "hn_mining_output"
    extra = "--search_topk 15 --no_annot_in_mined_hn 'true' --merge_mined_qrels 'true'"
    line = INFERENCE_LINE.format(job="mine_hn", out=mined_out, model=tiny_model, extra=extra)
    _run(INFERENCE, data, line, tmp_path, monkeypatch)
    rows = (mined_out / "hard_negative_mining" / "mined_qrels.tsv").read_text().splitlines()
    mined: dict[str, list[str]] = {}
    for row in rows[1:]:
        q, d, _ = row.split("\t")
        mined.setdefault(q, []).append(d)
    train: dict[str, set[str]] = {}
    for row in Path(data["qrels"]).read_text().splitlines()[1:]:
        q, d, _ = row.split("\t")
        train.setdefault(q, set()).add(d)
    hand = _hand_run(tiny_model, data, sorted(train))
    for qid, docs in mined.items():
        order = [
            d for d, _ in sorted(hand[qid].items(), key=lambda x: -x[1]) if d not in train[qid]
        ]
        assert docs == order[:15]


@pytest.mark.parametrize("package", ["densekit", "densekit.compat.trove"])
def test_train_with_task_instructions(data, tiny_decoder, tmp_path, monkeypatch, package):
    out = tmp_path / "model_output"
    line = TASK_LINE.format(out=out, model=tiny_decoder("llama"))
    script = TASK_INSTRUCTIONS_HEAD.format(package=package) + TRAIN_WITH_TASK_INSTRUCTIONS
    _run(script, data, line, tmp_path, monkeypatch)
    name, query = (tmp_path / "out.txt").read_text().split("\t")
    assert name == "EncoderWithTaskInstructions"
    instruction = "Given a web search query, retrieve relevant passages that answer the query"
    assert query.startswith(f"Instruct: {instruction}\nQuery: ")
    assert (out / "adapter_config.json").is_file() or (out / "densekit_config.json").is_file()


def test_every_module_path_trove_examples_import_exists():
    """``trove`` -> ``densekit.compat.trove`` in every import line of Trove's examples/*.py."""
    import importlib

    from densekit.compat import trove

    modeling = importlib.import_module("densekit.compat.trove.modeling.encoder_default")
    assert issubclass(modeling.DefaultEncoder, trove.BiEncoderRetriever)
    for name in trove.NAMES:  # every name the examples import from trove
        assert getattr(trove, name) is getattr(importlib.import_module("densekit"), name)


def test_unknown_encoder_class_is_one_line(tiny_model):
    from densekit import BiEncoderRetriever, ModelArguments
    from densekit.errors import ConfigError

    args = ModelArguments(model_name_or_path=tiny_model, encoder_class="no_such_encoder")
    with pytest.raises(ConfigError, match="--encoder_class no_such_encoder: no such encoder"):
        BiEncoderRetriever.from_model_args(args=args)
