"""Streaming encode (windows read from Arrow, sorted within the window) vs the whole-list path.

The whole-list path (``encode_texts``) sorts every text of the corpus by length first, then each
window of 64 batches by tokens: least padding, but it needs the corpus as one Python list. The
streaming path (``encode_table``, what ``densekit encode`` runs) reads one window of 64 batches
at a time from the Arrow table and sorts only within it. Both on SciFact passages, same model
(bundled MiniLM, fp32), same batch size, alternating round by round.

Printed: padded tokens computed per batch (deterministic: how much work each order gives the
model) for the whole corpus, and the timed passages/s of both on ``--docs`` passages. With
``--batch_size 16`` a window is 1,024 texts, so 2,048 passages span two windows.

    .venv/bin/python bench/encode_stream.py                 # 2,048 passages, batch 16, 2 rounds
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401  (environment first)
import numpy as np
import torch
from _common import DATA, alternate, header, median, model_path, paired_ratio, spread

from densekit.data.readers import load_corpus
from densekit.inference.encode import (
    WINDOW_BATCHES,
    encode_table,
    encode_texts,
    passage_texts,
    table_windows,
)
from densekit.modeling.encoder import DenseEncoder, load_tokenizer


def padded_tokens(lengths: list[int], order: np.ndarray, window: int, batch: int) -> int:
    """Tokens the model sees (batch size x longest in batch), windows sorted by tokens."""
    total = 0
    for start in range(0, len(order), window):
        inside = sorted((lengths[i] for i in order[start : start + window]), reverse=True)
        total += sum(len(inside[b : b + batch]) * inside[b] for b in range(0, len(inside), batch))
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=2048)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    header("streaming encode vs whole-list encode (MiniLM fp32)", args)
    encoder = DenseEncoder.from_pretrained(model_path())
    tokenizer = load_tokenizer(model_path())
    corpus = load_corpus(DATA / "corpus.jsonl")
    window = WINDOW_BATCHES * args.batch_size

    texts = passage_texts(encoder, corpus)
    max_len = encoder.settings.passage_max_len
    lengths = [
        len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]
    ]
    real = sum(lengths)
    whole = padded_tokens(
        lengths, np.argsort([-len(t) for t in texts], kind="stable"), window, args.batch_size
    )
    streamed = padded_tokens(lengths, np.arange(len(texts)), window, args.batch_size)
    unsorted = padded_tokens(lengths, np.arange(len(texts)), args.batch_size, args.batch_size)
    print(f"padded tokens, all {len(texts):,} passages ({real:,} real tokens):")
    print(f"  whole-list sort {whole:,} ({whole / real:.3f}x real)")
    print(f"  streamed windows of {window} {streamed:,} ({streamed / real:.3f}x real)")
    print(f"  no sorting {unsorted:,} ({unsorted / real:.3f}x real)")

    table = corpus.select(range(args.docs))
    subset = passage_texts(encoder, table)
    assert [t for _, w in table_windows(encoder, table, False, window) for t in w] == subset
    out: dict[str, np.ndarray] = {}

    def run_list() -> None:
        out["list"] = encode_texts(
            encoder, tokenizer, subset, False, args.batch_size, progress=False
        )

    def run_stream() -> None:
        parts = encode_table(encoder, tokenizer, table, False, args.batch_size, progress=False)
        out["stream"] = np.concatenate([vectors for _, vectors in parts])

    with torch.inference_mode():
        times = alternate({"whole-list": run_list, "streamed": run_stream}, args.rounds, warmup=0)
    for name, values in times.items():
        print(f"{name:<11} median {median(values):.1f}s ({spread(values)}), "
              f"{args.docs / median(values):.1f} passages/s")  # fmt: skip
    ratio = 1 / paired_ratio(times, "streamed", "whole-list")
    print(f"streamed / whole-list passages/s (median of per-round ratios): {ratio:.3f}")
    diff = float(np.abs(out["list"] - out["stream"]).max())
    print(f"max |difference| between the two paths' vectors: {diff:.1e}")


if __name__ == "__main__":
    main()
