"""PairTokenizer against the tokenizer's own pair call (the oracle), over tokenizer kinds."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer, UnigramTrainer
from transformers import PreTrainedTokenizerFast

from densekit.modeling.pair_tokens import PairTokenizer, pad
from densekit.modeling.reranker import CrossEncoderReranker, RerankerConfig

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


@pytest.fixture(scope="module")
def texts(scifact_rows) -> tuple[list[str], list[str]]:
    """Queries and passages, with the awkward cases: empty texts, a query longer than any
    pair, runs of spaces, tabs, newlines, accents and a space-free stretch."""
    queries = [r["query"] for r in scifact_rows[:40]]
    passages = [p for r in scifact_rows[:40] for p in r["pos"] + r["neg"]]
    odd = "  Naïve\tT-cells  (CD4+)\n\nrose   3-fold;  " * 30
    # longer than a 128-token pair: both sides truncated (not longer: the pair call's overflow
    # pieces, every query piece with every passage piece, grow with the product of the lengths)
    long_query = passages[0][:700]
    queries += ["", "IL-2", long_query, odd[:300]]
    passages += ["", "x", odd, "a" * 3000 + " tail", passages[0] + "   " + passages[1]]
    return queries, passages


def pairs_of(texts, n: int = 400, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    queries, passages = texts
    pairs = [(q, p) for q in queries[-4:] for p in passages[-5:]]  # every odd case with each
    pairs += [(rng.choice(queries), rng.choice(passages)) for _ in range(n)]
    return pairs


def assert_like_pair_call(tokenizer, pairs, max_len: int) -> PairTokenizer:
    fast = PairTokenizer.build(tokenizer, max_len)
    assert fast is not None
    expected = tokenizer(
        [q for q, _ in pairs], [p for _, p in pairs], max_length=max_len, truncation=True
    )
    got = fast(pairs)
    assert sorted(got) == sorted(expected.keys())
    for key in got:
        assert got[key] == expected[key], key
    return fast


def _trained(model, trainer, pre_tokenizer, normalizer, texts) -> Tokenizer:
    backend = Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizer
    if normalizer is not None:
        backend.normalizer = normalizer
    queries, passages = texts
    backend.train_from_iterator(queries + passages, trainer)
    return backend


def wrap(backend: Tokenizer, names: list[str]) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_input_names=names,
    )


@pytest.fixture(scope="module")
def byte_level_bpe(texts) -> PreTrainedTokenizerFast:
    """RoBERTa's kind: byte-level BPE, <s> A </s></s> B </s>, no type ids."""
    backend = _trained(
        models.BPE(),
        BpeTrainer(vocab_size=400, special_tokens=SPECIALS),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
        None,
        texts,
    )
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.RobertaProcessing(
        ("</s>", backend.token_to_id("</s>")), ("<s>", backend.token_to_id("<s>"))
    )
    return wrap(backend, ["input_ids", "attention_mask"])


@pytest.fixture(scope="module")
def metaspace_unigram(texts) -> PreTrainedTokenizerFast:
    """T5/XLM-R's kind: NFKC + lowercase, metaspace, unigram; type ids from a template."""
    backend = _trained(
        models.Unigram(),
        UnigramTrainer(vocab_size=300, special_tokens=SPECIALS, unk_token="<unk>"),
        pre_tokenizers.Metaspace(),
        normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]),
        texts,
    )
    eos = backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", eos)]
    )
    return wrap(backend, ["input_ids", "token_type_ids", "attention_mask"])


@pytest.mark.parametrize("max_len", [32, 128, 512])
def test_wordpiece_pairs_equal_the_pair_call(tokenizer, texts, max_len):
    fast = assert_like_pair_call(tokenizer, pairs_of(texts), max_len)
    assert fast.budget == max_len - 3  # [CLS] q [SEP] p [SEP]


@pytest.mark.parametrize("kind", ["byte_level_bpe", "metaspace_unigram"])
@pytest.mark.parametrize("max_len", [32, 128])
def test_other_tokenizer_kinds_equal_the_pair_call(request, texts, kind, max_len):
    assert_like_pair_call(request.getfixturevalue(kind), pairs_of(texts, seed=max_len), max_len)


def test_passages_are_cut_and_texts_tokenised_once(tokenizer, texts, monkeypatch):
    """The point of it: long passages reach the tokenizer cut, each distinct text once."""
    fast = PairTokenizer.build(tokenizer, 64)
    seen: list[str] = []
    real = fast.plain.encode_batch

    class Spy:  # tokenizers.Tokenizer's attributes are read-only: wrap it
        def encode_batch(self, batch, **kwargs):
            seen.extend(batch)
            return real(batch, **kwargs)

    fast.plain = Spy()
    queries, passages = texts
    long = sorted({p for p in passages[:-5] if len(p) > 2000})  # SciFact's, distinct
    pairs = [(q, p) for q in queries[:5] for p in long]
    assert fast(pairs) == dict(
        tokenizer([q for q, _ in pairs], [p for _, p in pairs], max_length=64, truncation=True)
    )
    assert sorted(t for t in seen if t in queries) == sorted(set(queries[:5]))
    cuts = [t for t in seen if t not in queries and t not in long]
    assert len(cuts) == len(long) and all(any(p.startswith(c) for p in long) for c in cuts)
    again = [t for t in seen if t in long]  # a cut that held too few tokens: whole, once
    assert len(again) == len(set(again)) < len(long) / 4
    assert sum(len(t) for t in seen) < sum(len(p) for p in long) / 2


def test_refused_where_a_cut_could_change_tokens(tokenizer, byte_level_bpe, texts):
    left = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer)
    left.truncation_side = "left"  # keeps the passage's end: a cut would drop it
    assert PairTokenizer.build(left, 64) is None
    unsplit = Tokenizer.from_str(byte_level_bpe.backend_tokenizer.to_str())
    unsplit.pre_tokenizer = pre_tokenizers.ByteLevel(use_regex=False)  # one piece per text
    assert PairTokenizer.build(wrap(unsplit, ["input_ids", "attention_mask"]), 64) is None
    unsplit.pre_tokenizer = None
    assert PairTokenizer.build(wrap(unsplit, ["input_ids", "attention_mask"]), 64) is None


def test_refused_where_the_probe_differs(tokenizer, monkeypatch):
    """A tokenizer the rules accept but whose pairs come out differently is caught at build."""
    monkeypatch.setattr(
        PairTokenizer, "__call__", lambda self, pairs: {"input_ids": [[0]] * len(pairs)}
    )
    assert PairTokenizer.build(tokenizer, 64) is None


def test_reranker_logits_same_as_with_the_pair_call(tiny_model, texts):
    reranker = CrossEncoderReranker.from_backbone(tiny_model, RerankerConfig(max_len=48))
    pairs = pairs_of(texts, n=60)
    fast = reranker.logits(pairs, batch_size=16)
    assert reranker._pair_tokenizers[48] is not None  # the cheaper path ran
    reranker._pair_tokenizers[48] = None  # the tokenizer's pair call instead
    slow = reranker.logits(pairs, batch_size=16)
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_equals_the_tokenizer_pad(tokenizer, texts, side, monkeypatch):
    monkeypatch.setattr(tokenizer, "padding_side", side)
    rows = PairTokenizer.build(tokenizer, 64)(pairs_of(texts, n=20))
    expected = tokenizer.pad(rows, padding=True, return_tensors="pt")
    got = pad(tokenizer, rows)
    assert sorted(got) == sorted(expected.keys())
    for key, value in got.items():
        assert value.dtype == expected[key].dtype
        assert torch.equal(value, expected[key]), key
