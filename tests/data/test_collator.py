"""RetrievalCollator: per-side truncation, padding multiple, EOS appending, padding side."""

from __future__ import annotations

import copy

import pytest
import torch

from densekit.data.collator import RetrievalCollator, tokenize

LONG = " ".join(f"word{i}" for i in range(80))
ITEMS = [
    {"query": "short query", "passages": ["tiny", LONG, "a medium passage of some words"]},
    {"query": LONG, "passages": ["x", "y z", LONG]},
]


@pytest.fixture
def eos_tokenizer(tokenizer):
    """The MiniLM tokenizer with an EOS token distinct from [SEP] (an unused vocab entry)."""
    tok = copy.deepcopy(tokenizer)
    tok.eos_token = "[unused1]"
    assert tok.eos_token_id not in (tok.sep_token_id, tok.pad_token_id, tok.unk_token_id)
    return tok


def _rows(encoding):
    """The unpadded token ids of each row, read through the attention mask."""
    return [
        ids[mask.bool()].tolist()
        for ids, mask in zip(encoding["input_ids"], encoding["attention_mask"], strict=True)
    ]


def _reference(tokenizer, texts, max_len):
    return [tokenizer(t, max_length=max_len, truncation=True)["input_ids"] for t in texts]


def test_truncation_per_side_and_padding_multiple(tokenizer):
    collator = RetrievalCollator(tokenizer, query_max_len=10, passage_max_len=21)
    batch = collator(ITEMS)
    queries = [item["query"] for item in ITEMS]
    passages = [p for item in ITEMS for p in item["passages"]]
    assert batch["query"]["input_ids"].shape[0] == 2
    assert batch["passage"]["input_ids"].shape[0] == 6
    assert _rows(batch["query"]) == _reference(tokenizer, queries, 10)
    assert _rows(batch["passage"]) == _reference(tokenizer, passages, 21)
    assert batch["query"]["attention_mask"].sum(1).max() == 10
    assert batch["passage"]["attention_mask"].sum(1).max() == 21
    assert batch["query"]["input_ids"].shape[1] == 16  # 10 padded up to a multiple of 8
    assert batch["passage"]["input_ids"].shape[1] == 24
    assert "teacher_scores" not in batch


def test_no_padding_multiple(tokenizer):
    batch = RetrievalCollator(tokenizer, 10, 21, pad_to_multiple_of=None)(ITEMS)
    assert batch["query"]["input_ids"].shape[1] == 10
    assert batch["passage"]["input_ids"].shape[1] == 21


def test_right_and_left_padding(tokenizer):
    left = copy.deepcopy(tokenizer)
    left.padding_side = "left"
    texts = ["one", "two words here", "three"]
    right_enc = tokenize(tokenizer, texts, 16)
    left_enc = tokenize(left, texts, 16)
    assert _rows(right_enc) == _rows(left_enc) == _reference(tokenizer, texts, 16)
    for mask in right_enc["attention_mask"]:
        n = int(mask.sum())
        assert mask[:n].all() and not mask[n:].any()
    for mask in left_enc["attention_mask"]:
        n = int(mask.sum())
        assert mask[mask.numel() - n :].all() and not mask[: mask.numel() - n].any()
    pad = tokenizer.pad_token_id
    assert (right_enc["input_ids"][right_enc["attention_mask"] == 0] == pad).all()
    assert (left_enc["input_ids"][left_enc["attention_mask"] == 0] == pad).all()


@pytest.mark.parametrize("side", ["right", "left"])
def test_append_eos_is_last_real_token(eos_tokenizer, side):
    eos_tokenizer.padding_side = side
    texts = ["short", LONG, "a few more words"]
    encoding = tokenize(eos_tokenizer, texts, 12, append_eos=True)
    assert encoding["input_ids"].shape[1] % 8 == 0
    expected = [[*ids, eos_tokenizer.eos_token_id] for ids in _reference(eos_tokenizer, texts, 11)]
    assert _rows(encoding) == expected
    assert max(len(r) for r in _rows(encoding)) == 12  # EOS counts within max_len
    assert "attention_mask" in encoding


def test_append_eos_through_the_collator(eos_tokenizer):
    batch = RetrievalCollator(eos_tokenizer, 8, 12, append_eos=True)(ITEMS)
    for side in ("query", "passage"):
        for row in _rows(batch[side]):
            assert row[-1] == eos_tokenizer.eos_token_id
            assert row.count(eos_tokenizer.eos_token_id) == 1
    assert max(len(r) for r in _rows(batch["query"])) == 8
    assert max(len(r) for r in _rows(batch["passage"])) == 12


def test_teacher_scores_batched(tokenizer):
    items = [
        {"query": "a", "passages": ["p", "n"], "scores": [1.0, 0.5]},
        {"query": "b", "passages": ["p", "n"], "scores": [2.0, 0.0]},
    ]
    batch = RetrievalCollator(tokenizer)(items)
    assert torch.equal(batch["teacher_scores"], torch.tensor([[1.0, 0.5], [2.0, 0.0]]))


def test_teacher_scores_and_graded_labels_stay_apart(tokenizer):
    teacher = [{"query": "a", "passages": ["p", "n"], "scores": [0.7, 0.2]}]
    graded = [{"query": "a", "passages": ["p", "n"], "labels": [2.0, 0.0]}]
    batch = RetrievalCollator(tokenizer)(teacher)
    assert "labels" not in batch and batch["teacher_scores"].tolist() == [pytest.approx([0.7, 0.2])]
    batch = RetrievalCollator(tokenizer)(graded)
    assert "teacher_scores" not in batch and batch["labels"].tolist() == [[2.0, 0.0]]


def test_id_tensors_pad_positive_ids(tiny_model):
    """Passage ids in batch order; positive ids one row per query, padded with -1."""
    from densekit.data.collator import RetrievalCollator
    from densekit.modeling.encoder import load_tokenizer

    items = [
        {"query": "a", "passages": ["x", "y"], "passage_ids": [1, 2], "positive_ids": [1]},
        {"query": "b", "passages": ["z", "x"], "passage_ids": [3, 1], "positive_ids": [3, 1, 7]},
    ]
    batch = RetrievalCollator(load_tokenizer(tiny_model), 8, 8)(items)
    assert batch["passage_ids"].tolist() == [1, 2, 3, 1]
    assert batch["positive_ids"].tolist() == [[1, -1, -1], [3, 1, 7]]
    plain = RetrievalCollator(load_tokenizer(tiny_model), 8, 8)([{"query": "a", "passages": ["x"]}])
    assert "passage_ids" not in plain
