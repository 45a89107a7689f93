"""Trove-style composable data: score filters, transforms, merging, binary and multi-level sets."""

from __future__ import annotations

import pytest
import torch

from densekit import (
    BinaryDataset,
    DataArguments,
    MaterializedQRelConfig,
    ModelArguments,
    MultiLevelDataset,
    RetrievalCollator,
    RetrievalLoss,
    RetrievalTrainer,
    RetrievalTrainingArguments,
)
from densekit.data.qrel_config import materialize
from densekit.errors import DataError
from densekit.modeling.factory import BiEncoderRetriever


@pytest.fixture
def files(tmp_path, write_jsonl):
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"_id": f"d{i}", "title": f"title {i}", "text": f"text of doc {i}"} for i in range(8)],
    )
    queries = write_jsonl(
        tmp_path / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(3)]
    )
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text(
        "query-id\tcorpus-id\tscore\n"
        "q0\td0\t3\nq0\td1\t2\nq0\td2\t1\nq0\td3\t0\n"
        "q1\td4\t2\nq1\td5\t1\n"
        "q2\td6\t0\n"
    )
    run = tmp_path / "bm25.trec"
    run.write_text(
        "q0 Q0 d4 1 9.5 bm25\nq0 Q0 d0 2 8.0 bm25\nq0 Q0 d7 3 7.0 bm25\n"
        "q1 Q0 d0 1 5.0 bm25\nq1 Q0 d1 2 4.0 bm25\n"
    )
    return {"corpus": str(corpus), "queries": str(queries), "qrels": str(qrels), "run": str(run)}


def _config(files, path_key="qrels", **kwargs):
    return MaterializedQRelConfig(
        qrel_path=files[path_key],
        corpus_path=files["corpus"],
        query_path=files["queries"],
        **kwargs,
    )


def test_min_inclusive_max_exclusive_and_transform(files):
    scores, queries, _ = materialize([_config(files, min_score=1, max_score=3)])
    assert scores == {"q0": {"d1": 2.0, "d2": 1.0}, "q1": {"d4": 2.0, "d5": 1.0}}
    assert queries["q0"] == "query 0"
    halved, _, _ = materialize(
        [_config(files, min_score=2, score_transform=lambda t: t["score"] / 2)]
    )
    assert halved == {"q0": {"d0": 1.5, "d1": 1.0}, "q1": {"d4": 1.0}}
    constant, _, _ = materialize([_config(files, max_score=1, score_transform=0.5)])
    assert constant == {"q0": {"d3": 0.5}, "q2": {"d6": 0.5}}


def test_later_configs_win_when_merged(files):
    first = _config(files, min_score=1)
    second = _config(files, path_key="run", score_transform=0.0)
    merged, _, _ = materialize([first, second])
    assert merged["q0"] == {"d0": 0.0, "d1": 2.0, "d2": 1.0, "d4": 0.0, "d7": 0.0}


def test_unknown_ids_name_the_qrels_file_and_line(files, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq9\td1\t1\n")
    config = MaterializedQRelConfig(str(bad), files["corpus"], files["queries"])
    with pytest.raises(DataError, match=r"bad.tsv:3: query id 'q9'"):
        materialize([config])
    bad.write_text("query-id\tcorpus-id\tscore\nq0\tnope\t1\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: document id 'nope'"):
        materialize([config])


def test_binary_dataset_draws_negatives_from_other_configs(files):
    args = DataArguments(train_group_size=3, passage_field_separator=": ")
    args.dataset_name = "scifact"
    dataset = BinaryDataset(
        args,
        positive_configs=_config(files, min_score=2),
        negative_configs=_config(files, path_key="run"),
        format_query=lambda text, dataset: f"{dataset}| {text}",  # Trove's keyword call
    )
    assert len(dataset) == 2  # q2 has no positive at score >= 2
    item = dataset[0]
    assert item["query"] == "scifact| query 0"
    assert item["passages"][0] in ("title 0: text of doc 0", "title 1: text of doc 1")
    # q0's run negatives minus its positives: d4 and d7 only (d0 is a positive)
    assert set(item["passages"][1:]) <= {"title 4: text of doc 4", "title 7: text of doc 7"}


def test_multi_level_dataset_keeps_graded_labels(files):
    args = DataArguments(train_group_size=2)
    top = MultiLevelDataset(args, _config(files), data_args_overrides={"group_size": 3})
    item = top[top.qids.index("q0")]
    assert item["labels"] == [3.0, 2.0, 1.0]
    assert item["passages"][0] == "title 0 text of doc 0"
    padded = top[top.qids.index("q2")]
    assert padded["labels"] == [0.0, 0.0, 0.0] and len(padded["passages"]) == 3
    rand = MultiLevelDataset(
        args,
        _config(files),
        data_args_overrides={"group_size": 2, "passage_selection_strategy": "random"},
    )
    seen = set()
    for epoch in range(12):
        rand.set_epoch(epoch)
        row = rand[rand.qids.index("q0")]
        assert row["labels"] == sorted(row["labels"], reverse=True)
        seen.add(tuple(row["labels"]))
    assert len(seen) > 1


def test_trove_style_composition_trains(files, tiny_model, tmp_path):
    model_args = ModelArguments(model_name_or_path=tiny_model, pooling="mean", loss="listwise")
    data_args = DataArguments(train_group_size=3, query_max_len=16, passage_max_len=16)
    from densekit.modeling.encoder import load_tokenizer

    model = BiEncoderRetriever.from_model_args(model_args, data_args)
    tokenizer = load_tokenizer(tiny_model)
    dataset = MultiLevelDataset(data_args, _config(files))
    args = RetrievalTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=3, max_steps=2, report_to=[]
    )
    trainer = RetrievalTrainer(
        model=model,
        args=args,
        data_collator=RetrievalCollator(tokenizer, 16, 16),
        train_dataset=dataset,
        loss_fn=RetrievalLoss.create("listwise", temperature=1.0),
    )
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0


def test_ir_metrics_during_training_match_a_hand_ranking(files, tiny_model, tmp_path):
    """Trove's pattern: eval groups scored by the trainer, IRMetrics batch by batch."""
    import numpy as np

    from densekit import DenseEncoder, IRMetrics
    from densekit.modeling.encoder import load_tokenizer

    data_args = DataArguments(train_group_size=3, query_max_len=16, passage_max_len=16)
    model = DenseEncoder.from_pretrained(tiny_model, pooling="mean")
    dataset = MultiLevelDataset(data_args, _config(files))
    collator = RetrievalCollator(load_tokenizer(tiny_model), 16, 16)
    args = RetrievalTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_eval_batch_size=2,
        batch_eval_metrics=True,
        dataloader_drop_last=False,
        report_to=[],
    )
    metrics = IRMetrics(k_values=[1, 3])
    trainer = RetrievalTrainer(
        model=model,
        args=args,
        data_collator=collator,
        eval_dataset=dataset,
        compute_metrics=metrics,
        loss_fn=RetrievalLoss.create("listwise"),
    )
    result = trainer.evaluate()
    # the same numbers by hand: score each group, rank, compute MRR@3 over graded labels >= 1
    model.eval()
    reciprocal = []
    for index in range(len(dataset)):
        batch = collator([dataset[index]])
        with torch.no_grad():
            q = model.encode_query(batch["query"])
            p = model.encode_passage(batch["passage"])
        order = np.argsort(-(q @ p.T)[0].numpy(), kind="stable")
        labels = batch["labels"][0].numpy()[order]
        hits = [rank for rank, label in enumerate(labels[:3], start=1) if label >= 1]
        reciprocal.append(1.0 / hits[0] if hits else 0.0)
    assert result["eval_mrr@3"] == pytest.approx(np.mean(reciprocal), rel=1e-6)
    assert 0.0 <= result["eval_ndcg@1"] <= 1.0 and "eval_loss" in result


def test_trove_qrel_files_lists_filters_and_groups(files, tmp_path, write_jsonl):
    """Grouped jsonl and Tevatron rows as qrels, several paths, filter_fn, group_* cuts and
    score transforms, each checked against the triplets written here."""
    grouped = write_jsonl(
        tmp_path / "grouped.jsonl",
        [{"qid": "q0", "docid": ["d5", "d6", "d7"], "score": [0.5, 2.5, 1.5]},
         {"qid": "q1", "docid": ["d2"], "score": [3]}],
    )  # fmt: skip
    tevatron = write_jsonl(
        tmp_path / "tevatron.jsonl",
        [{"query_id": "q2", "query": "x", "positive_passages": [{"docid": "d1", "text": "t"}],
          "negative_passages": [{"docid": "d3", "text": "t"}]}],
    )  # fmt: skip
    both = MaterializedQRelConfig(
        [str(grouped), str(tevatron)], [files["corpus"]], [files["queries"]]
    )
    scores, _, _ = materialize([both])
    assert scores == {
        "q0": {"d5": 0.5, "d6": 2.5, "d7": 1.5},
        "q1": {"d2": 3.0},
        "q2": {"d3": 0.0, "d1": 1.0},
    }

    def cut(**kwargs):
        return materialize([MaterializedQRelConfig(str(grouped), files["corpus"], files["queries"], **kwargs)])[0]  # fmt: skip

    assert cut(group_top_k=1)["q0"] == {"d6": 2.5}
    assert cut(group_bottom_k=2)["q0"] == {"d5": 0.5, "d7": 1.5}
    assert cut(group_first_k=2)["q0"] == {"d5": 0.5, "d6": 2.5}
    assert len(cut(group_random_k=2)["q0"]) == 2
    assert cut(filter_fn=lambda t: t["docid"] != "d6", min_score=2)["q0"] == {"d5": 0.5, "d7": 1.5}
    assert cut(group_filter_fn=lambda ts: ts[-1:])["q0"] == {"d7": 1.5}
    assert cut(score_transform="floor")["q0"] == {"d5": 0.0, "d6": 2.0, "d7": 1.0}
    assert cut(score_transform="ceil")["q0"] == {"d5": 1.0, "d6": 3.0, "d7": 2.0}
    subset = tmp_path / "subset.txt"
    subset.write_text("q1\n")
    assert cut(query_subset_path=str(subset)) == {"q1": {"d2": 3.0}}
    with pytest.raises(Exception, match="choose one of"):
        cut(group_top_k=1, group_first_k=1)
    (tmp_path / "broken.jsonl").write_text('{"qid": "q0", "docid": ["d1"], "score": [1, 2]}\n')
    with pytest.raises(DataError, match=r"broken.jsonl:1: docid and score"):
        materialize([MaterializedQRelConfig(str(tmp_path / "broken.jsonl"), files["corpus"], files["queries"])])  # fmt: skip
