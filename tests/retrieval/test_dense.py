"""The text a model is evaluated on is the text it was trained on (encoder-owned formatting)."""

from __future__ import annotations

import datasets

from densekit.arguments import DataArguments, ModelArguments
from densekit.data.readers import load_train
from densekit.data.train_dataset import Corpus, TrainDataset
from densekit.inference.encode import passage_texts, query_texts
from densekit.modeling.encoder import DenseEncoder
from densekit.modeling.factory import BiEncoderRetriever


def test_training_and_evaluation_format_texts_alike(tiny_model, tmp_path, write_jsonl):
    data_args = DataArguments(
        query_prefix="Q> ", passage_prefix="P> ", passage_field_separator=" || "
    )
    encoder = BiEncoderRetriever.from_model_args(
        ModelArguments(model_name_or_path=tiny_model), data_args
    )
    corpus = datasets.Dataset.from_list(
        [
            {"docid": "d1", "title": "Cats", "text": "Small felines."},
            {"docid": "d2", "title": "", "text": "Untitled body."},
        ]
    )
    rows = [
        {
            "query_id": "q1",
            "query": "what purrs",
            "positive_document_ids": ["d1"],
            "negative_document_ids": ["d2"],
        },
    ]
    dataset = TrainDataset(
        load_train(write_jsonl(tmp_path / "t.jsonl", rows)),
        group_size=2,
        corpus=Corpus(corpus),
        text_format=encoder.settings,
    )
    item = dataset[0]
    assert item["passages"] == ["P> Cats || Small felines.", "P> Untitled body."]
    assert item["passages"] == passage_texts(encoder, corpus)
    queries = datasets.Dataset.from_list([{"query_id": "q1", "text": "what purrs"}])
    assert [item["query"]] == query_texts(encoder, queries)

    encoder.save_pretrained(tmp_path / "saved")
    reloaded = DenseEncoder.from_pretrained(str(tmp_path / "saved"))
    assert passage_texts(reloaded, corpus) == item["passages"]
    assert reloaded.format_query("x") == "Q> x"
