"""``densekit encode``: texts -> ``.npy`` vectors + ids, written atomically.

Texts are read from the Arrow table and vectors written into the ``.npy`` one window at a time,
so memory does not grow with the corpus.

Under ``torchrun`` every rank encodes its own shard without flags; a shard already on disk for
the same source and kind is skipped, so an interrupted job resumes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import torch

from densekit import peer_apply, precision
from densekit.atomic import check_target
from densekit.commands import run_guarded
from densekit.data.qrels import keep_judged, load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.errors import ConfigError
from densekit.inference.backends import (
    BACKENDS,
    QUANTIZATIONS,
    ExportedEncoder,
    ExportSpec,
    check_exportable_folder,
    load_backend,
    require_runtime,
)
from densekit.inference.backends.exports import corpus_sample
from densekit.inference.encode import encode_table, truncate
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.precision import PRECISIONS
from densekit.resources import bundled_model_path
from densekit.retrieval.embeddings import META_FILE, read_meta, stream_embeddings

logger = logging.getLogger("densekit.encode")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="densekit encode", description=__doc__.splitlines()[0])
    p.add_argument("--model_name_or_path", default=None, help="densekit, ST or HF folder")
    p.add_argument("--dataset_path", help="corpus or queries (also --dataset_name, required)")
    p.add_argument("--encode_output_path", help="output folder (required)")
    p.add_argument("--encode_is_query", action="store_true", help="encode queries")
    p.add_argument("--qrels", help="keep only the queries judged in this qrels file")
    p.add_argument("--batch_size", "--per_device_eval_batch_size", type=int, default=64)
    p.add_argument("--query_max_len", "--q_max_len", type=int, default=None)
    p.add_argument("--passage_max_len", "--p_max_len", type=int, default=None)
    p.add_argument("--query_prefix", "--query_instruction_for_retrieval", default=None)
    p.add_argument("--passage_prefix", "--passage_instruction_for_retrieval", default=None)
    p.add_argument("--passage_field_separator", default=None, help="default: the model's")
    p.add_argument("--pooling", "--sentence_pooling_method", default=None, help="cls|mean|last|eos")
    p.add_argument("--normalize", "--normalized", action="store_true", default=None)
    p.add_argument("--append_eos_token", action="store_true", default=None)
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 where the device does it natively, else fp32",
    )
    p.add_argument("--bf16", action="store_true", help="same as --precision bf16")
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
    p.add_argument(
        "--backend", choices=BACKENDS, default="torch", help="onnx/openvino: CPU, exported once"
    )
    p.add_argument("--quantize", choices=QUANTIZATIONS, default=None, help="int8 (onnx/openvino)")
    p.add_argument("--export_dir", default=None, help="export cache (default: beside the model)")
    peer_apply.add_to_parser(p, "encode")  # Tevatron/FlagEmbedding names; unused ones reported
    return p


def _shard_plan(args: argparse.Namespace) -> tuple[int, int]:
    num, index = args.num_shards, args.shard_index
    if num is None and index is None:  # under torchrun each rank takes its own shard
        num, index = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    num, index = num or 1, index or 0
    if num < 1 or not 0 <= index < num:
        raise ConfigError(f"--shard_index {index} is outside 0..{num - 1}")
    _check_split(Path(args.encode_output_path), num)
    return num, index


def _check_split(folder: Path, num_shards: int) -> None:
    """Shards of another split in the same folder would overlap theirs: refuse to mix them.

    Under ``torchrun --nnodes N`` the split is the world size: a resumed job must use the same.
    """
    for shard in folder.glob("shard-*-of-*") if folder.is_dir() else ():
        total = shard.name.rsplit("-of-", 1)[-1]
        if total.isdigit() and int(total) != num_shards:
            raise ConfigError(
                f"{folder} holds shards of a {int(total)}-way split ({shard.name}); encode "
                f"with {int(total)} shards (ranks) to resume it, or choose another output path"
            )


def _source(path: str) -> str:
    return str(Path(path).resolve()) if Path(path).exists() else str(path)


def _already_done(out: Path, args: argparse.Namespace) -> bool:
    """A complete folder for the same source and kind is skipped; any other is refused."""
    if not (out / META_FILE).is_file() or args.overwrite:
        return False
    meta = read_meta(out)
    kind = "queries" if args.encode_is_query else "corpus"
    done_kind = "queries" if meta.get("is_query") else "corpus"
    done_source = meta.get("source")
    if done_kind != kind or (done_source and _source(done_source) != _source(args.dataset_path)):
        raise ConfigError(
            f"{out} already holds {done_kind} vectors of {done_source}; "
            "pass --overwrite to replace them or choose another --encode_output_path"
        )
    return True


def _read_table(args: argparse.Namespace, num_shards: int, shard_index: int) -> datasets.Dataset:
    if args.encode_is_query:
        table = load_queries(args.dataset_path)
        if args.qrels:
            table = keep_judged(table, load_qrels(args.qrels), args.qrels)
    else:
        table = load_corpus(args.dataset_path)
    if num_shards > 1:
        table = table.shard(num_shards, shard_index, contiguous=True)
    return table


def _load_encoder(args: argparse.Namespace) -> DenseEncoder:
    return DenseEncoder.from_pretrained(
        args.model_name_or_path,
        pooling=args.pooling,
        normalize=args.normalize,
        query_prefix=args.query_prefix,
        passage_prefix=args.passage_prefix,
        passage_field_separator=args.passage_field_separator,
        query_max_len=args.query_max_len,
        passage_max_len=args.passage_max_len,
        append_eos_token=args.append_eos_token,
        lora_name_or_path=args.lora_name_or_path,
    )


def _check_flags(args: argparse.Namespace) -> None:
    if args.fp16 and not torch.cuda.is_available():
        raise ConfigError("--fp16 needs a CUDA GPU; on CPU use --bf16 (autocast)")
    if args.batch_size < 1:
        raise ConfigError(f"--batch_size must be positive, got {args.batch_size}")
    if args.truncate_dim is not None and args.truncate_dim < 1:
        raise ConfigError(f"--truncate_dim must be positive, got {args.truncate_dim}")
    if args.backend == "torch" and (args.quantize or args.export_dir):
        raise ConfigError("--quantize and --export_dir need --backend onnx or openvino")
    if args.backend != "torch" and (args.device not in (None, "cpu") or args.bf16 or args.fp16):
        raise ConfigError(f"--backend {args.backend} runs on CPU in fp32 (or --quantize int8)")
    if args.backend != "torch":
        require_runtime(ExportSpec(args.backend, args.quantize))
        if args.model_name_or_path:
            check_exportable_folder(args.model_name_or_path)


def parse_args(argv: list[str] | None, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The encode flags (peer names mapped, values checked)."""
    args = parser.parse_args(argv)
    peer_apply.apply_encode(args)
    _check_flags(args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, build_parser())
    return encode_with(args, _torch_encoder if args.backend == "torch" else _exported_encoder)


def _torch_encoder(args: argparse.Namespace) -> tuple[DenseEncoder, bool]:
    """The torch encoder on its device, and whether it computes in bf16."""
    encoder = _load_encoder(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder.to(device)
    return encoder, precision.resolve("bf16" if args.bf16 else args.precision, device) == "bf16"


def _exported_encoder(args: argparse.Namespace) -> tuple[Any, bool]:
    """The model's transformer exported (once) to ONNX Runtime / OpenVINO, on CPU."""
    encoder = _load_encoder(args)
    tokenizer = load_tokenizer(
        args.tokenizer_name or args.model_name_or_path, encoder.settings.padding_side
    )
    texts = None
    if args.backend == "openvino" and args.quantize:  # int8 calibrates on these texts
        texts = corpus_sample(encoder, _read_table(args, 1, 0), args.encode_is_query)
    exported = load_backend(
        encoder,
        tokenizer,
        args.model_name_or_path,
        args.backend,
        args.quantize,
        args.export_dir,
        texts,
    )
    return exported, False


def encode_with(args: argparse.Namespace, load_encoder: Callable[..., tuple[Any, bool]]) -> int:
    """Encode as ``args`` say with the encoder ``load_encoder(args) -> (encoder, bf16)`` gives
    (the torch one here, the Flax one for ``densekit jax-encode``): same files either way."""
    num_shards, shard_index = _shard_plan(args)
    out = Path(args.encode_output_path)
    if num_shards > 1:
        out = out / f"shard-{shard_index:05d}-of-{num_shards:05d}"
    if _already_done(out, args):
        print(f"densekit encode: {out} is complete; skipped (--overwrite to redo)")
        return 0
    check_target(out, folder=True, overwrite=args.overwrite)
    # Data first: a bad file fails in a second, before any model is loaded.
    table = _read_table(args, num_shards, shard_index)
    args.model_name_or_path = args.model_name_or_path or bundled_model_path()
    encoder, bf16 = load_encoder(args)
    tokenizer = load_tokenizer(
        args.tokenizer_name or args.model_name_or_path, encoder.settings.padding_side
    )
    meta = {
        "model": args.model_name_or_path,
        "is_query": args.encode_is_query,
        "normalized": encoder.settings.normalize,
        "precision": "bf16" if bf16 else "fp32",
        **({"backend": encoder.backend} if isinstance(encoder, ExportedEncoder) else {}),
        "shard": [shard_index, num_shards],
        "source": _source(args.dataset_path),
    }
    _stream_to(out, table, encoder, tokenizer, args, bf16, meta)
    return 0


def _stream_to(out: Path, table, encoder, tokenizer, args: argparse.Namespace, bf16, meta) -> None:
    """Encode ``table`` window by window straight into the output folder's ``.npy``."""
    windows = encode_table(
        encoder, tokenizer, table, args.encode_is_query, args.batch_size, bf16=bf16
    )
    with stream_embeddings(
        out, len(table), meta, args.embedding_dtype, overwrite=args.overwrite
    ) as writer:
        for ids, vectors in windows:
            if args.truncate_dim:
                vectors = truncate(vectors, args.truncate_dim, encoder.settings.normalize)
            writer.append(ids, vectors)
    logger.info("wrote %d vectors of dim %d to %s", writer.rows, writer.dim, out)


if __name__ == "__main__":
    sys.exit(run_guarded(main))
