"""A toy relevance that a cross-encoder learns in a few dozen steps and a bi-encoder cannot.

Texts are ``"<word> <marker>"`` with a colour word and a marker ``up``/``down``. A passage is
relevant to a query iff it has the query's word AND the other marker (word match, then an XOR of
the markers). Each query's group: the positive ``"w m'"``, the hard negative ``"w m"`` (the
query's own text) and two easy negatives of other words, one with each marker (so the marker
alone decides nothing).

Why no bi-encoder with one shared tower (densekit's default: no prefixes, tied weights) can rank
it, whatever its size, pooling or normalization: it scores ``s(x, y) = f(x) . f(y)`` with the
same ``f`` on both sides (checked below: a text encoded as query and as passage gives the same
vector). Take a word ``w`` and ``a = "w up"``, ``b = "w down"``. Query ``a`` needs
``s(a, b) > s(a, a)`` and query ``b`` needs ``s(b, a) > s(b, b)``; adding them,
``2 f(a).f(b) > |f(a)|^2 + |f(b)|^2``, i.e. ``|f(a) - f(b)|^2 < 0``: impossible. So for every word
at most one of its two queries ranks its positive first: top-1 accuracy over all queries is at
most 1/2, the chance level of the hard pair. (An XOR alone is no obstacle to an inner product,
``-(+-1)(+-1)`` is bilinear; what breaks it is that the identical text must lose, which Cauchy-
Schwarz forbids for a symmetric score.) A cross-encoder reads both texts together and only has to
compare two word tokens and two marker tokens.
"""

from __future__ import annotations

import random

import numpy as np
from conftest import toy_bert

from densekit.training.reranker_trainer import RerankerRun, build_trainer, read_data

WORDS = ["red", "blue", "green", "black", "white", "brown", "pink", "gray"]
MARKERS = ("up", "down")
STEPS, LR, BATCH, GROUP = 40, 5e-3, 16, 4


def group(word: str, marker: str, rng: random.Random) -> dict:
    other = MARKERS[1 - MARKERS.index(marker)]
    easy = rng.sample([w for w in WORDS if w != word], 2)
    return {
        "query": f"{word} {marker}",
        "pos": [f"{word} {other}"],
        "neg": [f"{word} {marker}", f"{easy[0]} {marker}", f"{easy[1]} {other}"],
    }


def rows(repeats: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [group(w, m, rng) for _ in range(repeats) for w in WORDS for m in MARKERS]


def top1(scores: list[np.ndarray]) -> float:
    """Fraction of groups whose positive (index 0) scores strictly above every negative."""
    return float(np.mean([s[0] > s[1:].max() for s in scores]))


def word_tokenizer():
    """A BERT-style tokenizer whose vocabulary is the toy's words (a 30k-row embedding would
    make each step's backward and Adam update 1000 times larger for nothing)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate([*specials, *WORDS, *MARKERS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=64,
    )  # fmt: skip


def toy_backbone(folder) -> str:
    """A tiny random BERT without dropout over the toy task's words."""
    return toy_bert(word_tokenizer(), folder)


def train_bi_encoder(backbone: str, train: str, out: str):
    """The same backbone, data, steps, batch and learning rate through ``densekit train``'s
    library path (InfoNCE); returns the query and passage encoders as one batched encoder."""
    from densekit.arguments import DataArguments, ModelArguments, RetrievalTrainingArguments
    from densekit.encoders.batched import BatchedTextEncoder
    from densekit.training.run import build_trainer, read_training_data

    data_args = DataArguments(
        dataset_path=train, train_group_size=GROUP, query_max_len=8, passage_max_len=8
    )
    args = RetrievalTrainingArguments(
        output_dir=out, max_steps=STEPS, learning_rate=LR, per_device_train_batch_size=BATCH,
        save_strategy="no", logging_steps=10, seed=0, report_to="none", precision="fp32",
        disable_tqdm=True,
    )  # fmt: skip
    trainer = build_trainer(
        ModelArguments(model_name_or_path=backbone), data_args, args, read_training_data(data_args)
    )
    trainer.train()
    encoder = trainer.accelerator.unwrap_model(trainer.model).eval()
    return BatchedTextEncoder(encoder, trainer.processing_class, "torch")


def test_cross_encoder_learns_word_match_and_marker_xor_a_bi_encoder_cannot(tmp_path, write_jsonl):
    backbone = toy_backbone(tmp_path / "backbone")
    train = str(write_jsonl(tmp_path / "train.jsonl", rows(repeats=6, seed=1)))
    held_out = rows(repeats=1, seed=2)  # every query once, fresh easy negatives

    run = RerankerRun(
        model_name_or_path=backbone, dataset_path=train, output_dir=str(tmp_path / "ce"),
        train_group_size=GROUP, max_len=12,
        training={"max_steps": STEPS, "learning_rate": LR, "per_device_train_batch_size": BATCH,
                  "save_strategy": "no", "logging_steps": 10, "seed": 0, "disable_tqdm": True},
    )  # fmt: skip
    trainer = build_trainer(run, read_data(run))  # trained in memory: no folder to write
    trainer.train()
    cross = trainer.model
    cross_scores = [
        cross.score([r["query"]] * GROUP, r["pos"] + r["neg"], activation=False) for r in held_out
    ]

    bi = train_bi_encoder(backbone, train, str(tmp_path / "bi"))
    texts = sorted({f"{w} {m}" for w in WORDS for m in MARKERS})
    as_query = bi.encode_queries(texts).astype(np.float64)
    as_passage = bi.encode_passages(texts).astype(np.float64)
    # the premise of the argument: one function f for queries and passages
    scale = np.abs(as_query).max()
    np.testing.assert_allclose(as_query, as_passage, rtol=1e-5, atol=1e-6 * scale)
    vec = dict(zip(texts, as_passage, strict=True))
    bi_scores = [
        np.array([vec[r["query"]] @ vec[p] for p in r["pos"] + r["neg"]]) for r in held_out
    ]

    cross_acc, bi_acc = top1(cross_scores), top1(bi_scores)
    assert cross_acc >= 0.9, (cross_acc, bi_acc)
    # <= 1/2 by the argument above; a float64 rounding tie may at most flip one query
    assert bi_acc <= 0.5 + 1 / len(held_out), (cross_acc, bi_acc)
