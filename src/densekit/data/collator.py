"""Tokenize groups on the fly into padded tensors (dynamic padding, per-side truncation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase


def tokenize(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_len: int,
    append_eos: bool = False,
    pad_to_multiple_of: int | None = 8,
) -> BatchEncoding:
    """Tokenize, truncate to ``max_len`` (EOS included when appended) and pad to a multiple.

    Padding is a separate step: the tokenizer refuses truncation to a length that is not a
    multiple of ``pad_to_multiple_of`` (e.g. ``--p_max_len 156``) when asked to do both at once.
    """
    encoded = tokenizer(
        texts,
        max_length=max_len - 1 if append_eos else max_len,
        truncation=True,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False if append_eos else None,
    )
    if append_eos:
        encoded["input_ids"] = [[*ids, tokenizer.eos_token_id] for ids in encoded["input_ids"]]
    return tokenizer.pad(
        encoded,
        padding=True,
        pad_to_multiple_of=pad_to_multiple_of,
        return_attention_mask=True,
        return_tensors="pt",
    )


@dataclass
class RetrievalCollator:
    """Turns dataset items into ``{"query", "passage", ["teacher_scores"], ["labels"],
    ["passage_ids", "positive_ids"]}``.

    ``passage_ids`` [n * group] and ``positive_ids`` [n, most positives in the batch], padded
    with -1, are the items' stable passage ids (``TrainDataset``): what the trainer needs to
    tell a query's judged positives apart from its true in-batch negatives. Teacher scores (``scores``: FlagEmbedding ``pos_scores``/``neg_scores``) and graded qrels
    labels (``labels``: ``MultiLevelDataset``) stay apart: a loss may distil from either, but
    only labels are relevance judgments that IR metrics may count.
    """

    tokenizer: PreTrainedTokenizerBase
    query_max_len: int = 32
    passage_max_len: int = 128
    append_eos: bool = False
    pad_to_multiple_of: int | None = 8
    data_args: Any = None  # Trove's form: lengths and padding multiple from DataArguments

    def __post_init__(self) -> None:
        if self.data_args is not None:
            self.query_max_len = self.data_args.query_max_len
            self.passage_max_len = self.data_args.passage_max_len
            self.pad_to_multiple_of = self.data_args.pad_to_multiple_of or None

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        queries = [item["query"] for item in items]
        passages = [text for item in items for text in item["passages"]]
        batch: dict[str, Any] = {
            "query": tokenize(
                self.tokenizer,
                queries,
                self.query_max_len,
                self.append_eos,
                self.pad_to_multiple_of,
            ),
            "passage": tokenize(
                self.tokenizer,
                passages,
                self.passage_max_len,
                self.append_eos,
                self.pad_to_multiple_of,
            ),
        }
        for key, name in (("scores", "teacher_scores"), ("labels", "labels")):
            if all(item.get(key) for item in items):
                batch[name] = torch.tensor([item[key] for item in items], dtype=torch.float32)
        if all(item.get("passage_ids") is not None for item in items):
            batch.update(id_tensors(items))
        return batch


def id_tensors(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The items' passage ids in batch order, and each query's positive ids padded with -1."""
    widest = max(len(item["positive_ids"]) for item in items)
    positives = torch.full((len(items), widest), -1, dtype=torch.long)
    for row, item in enumerate(items):
        positives[row, : len(item["positive_ids"])] = torch.tensor(item["positive_ids"])
    passages = [pid for item in items for pid in item["passage_ids"]]
    return {"passage_ids": torch.tensor(passages, dtype=torch.long), "positive_ids": positives}
