"""The flags ``densekit encode`` and ``densekit jax-encode`` share, and their typed settings.

Not a command: the two encode commands build their parsers here, so neither imports the other,
and the library below them receives an :class:`EncodeJob` and an :class:`EncoderSpec`.
"""

from __future__ import annotations

import argparse

import torch

from densekit.arguments import build_parser as train_parser
from densekit.compat import apply as peer_apply
from densekit.encoders import EncoderSpec
from densekit.encoders.job import EncodeJob
from densekit.errors import ConfigError
from densekit.precision import PRECISIONS
from densekit.resources import bundled_model_path

_OVERRIDES = (
    "pooling",
    "normalize",
    "query_prefix",
    "passage_prefix",
    "passage_field_separator",
    "query_max_len",
    "passage_max_len",
    "append_eos_token",
)


def build_parser(prog: str, description: str, backends: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
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
        "--backend",
        choices=backends,
        default=backends[0],
        help="encoder backend (onnx/openvino: CPU, exported once)",
    )
    p.add_argument("--quantize", choices=("int8",), default=None, help="int8 (onnx/openvino)")
    p.add_argument("--export_dir", default=None, help="export cache (default: beside the model)")
    peer_apply.add_to_parser(p, "encode", train_parser())  # peer names; unused ones reported
    return p


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[EncodeJob, EncoderSpec]:
    """The job and the encoder the flags describe (peer names mapped, values checked)."""
    args = parser.parse_args(argv)
    peer_apply.apply_encode(args)
    if args.fp16 and not torch.cuda.is_available():
        raise ConfigError("--fp16 needs a CUDA GPU; on CPU use --bf16 (autocast)")
    if args.backend in ("onnx", "openvino") and args.fp16:
        raise ConfigError(f"--backend {args.backend} runs on CPU in fp32 (or --quantize int8)")
    job = EncodeJob(
        dataset_path=args.dataset_path,
        output_path=args.encode_output_path,
        is_query=args.encode_is_query,
        qrels=args.qrels,
        batch_size=args.batch_size,
        embedding_dtype=args.embedding_dtype,
        truncate_dim=args.truncate_dim,
        num_shards=args.num_shards,
        shard_index=args.shard_index,
        overwrite=args.overwrite,
    )
    job.check()
    overrides = {name: getattr(args, name) for name in _OVERRIDES}
    overrides["lora_name_or_path"] = args.lora_name_or_path
    spec = EncoderSpec(
        model=args.model_name_or_path or bundled_model_path(),
        backend=args.backend,
        quantize=args.quantize,
        export_dir=args.export_dir,
        device=args.device,
        precision="bf16" if args.bf16 else args.precision,
        tokenizer=args.tokenizer_name,
        overrides=overrides,
    )
    return job, spec
