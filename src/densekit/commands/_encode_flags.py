"""The flags ``densekit encode`` and ``densekit jax-encode`` share, and their typed settings.

Not a command: the two encode commands build their parsers here, so neither imports the other,
and the library below them receives an :class:`EncodeJob` and an :class:`EncoderSpec`. Building
the parser imports neither torch nor transformers (``--help`` starts in well under a second):
the training flags that Tevatron's encode driver also accepts join the parser only when a flag
the encode parser does not know is given.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from densekit.commands._help import new_parser
from densekit.compat import apply as peer_apply
from densekit.errors import ConfigError
from densekit.precision import PRECISIONS
from densekit.resources import bundled_model_path

if TYPE_CHECKING:
    from densekit.encoders import EncoderSpec
    from densekit.encoders.job import EncodeJob

# the backends densekit registers itself (densekit.encoders.registry); one a user registers
# from Python is offered too, as registering it has imported the registry
BUILTIN_BACKENDS = ("torch", "onnx", "openvino", "jax")
TRAIN_FLAGS_NOTE = (
    "Every densekit train flag is accepted too (Tevatron's encode driver parses them all)\n"
    "and reported as unused. The README's peer flag table lists every peer flag."
)

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


def registered_backends() -> list[str]:
    """``--backend`` choices: the built-in backends, and any registered from Python."""
    registry = sys.modules.get("densekit.encoders.registry")
    return registry.backend_names() if registry is not None else list(BUILTIN_BACKENDS)


def build_parser(
    prog: str, description: str, backends: list[str], train_flags: bool = False
) -> argparse.ArgumentParser:
    """The encode flags; ``train_flags`` adds every training flag (accepted, reported unused)."""
    p = new_parser(prog, description, epilog=TRAIN_FLAGS_NOTE)
    p.add_argument(
        "--model_name_or_path",
        default=None,
        help="densekit, ST or HF folder (default: the bundled all-MiniLM-L6-v2)",
    )
    p.add_argument("--dataset_path", help="corpus or queries (also --dataset_name, required)")
    p.add_argument("--encode_output_path", help="output folder (required)")
    p.add_argument("--encode_is_query", action="store_true", help="encode queries")
    p.add_argument("--qrels", help="keep only the queries judged in this qrels file")
    p.add_argument(
        "--batch_size",
        "--per_device_eval_batch_size",
        type=int,
        default=64,
        help="texts per forward pass",
    )
    p.add_argument(
        "--query_max_len",
        "--q_max_len",
        type=int,
        default=None,
        help="query tokens kept (default: the model's)",
    )
    p.add_argument(
        "--passage_max_len",
        "--p_max_len",
        type=int,
        default=None,
        help="passage tokens kept (default: the model's)",
    )
    p.add_argument(
        "--query_prefix",
        "--query_instruction_for_retrieval",
        default=None,
        help="text put before each query (default: the model's)",
    )
    p.add_argument(
        "--passage_prefix",
        "--passage_instruction_for_retrieval",
        default=None,
        help="text put before each passage (default: the model's)",
    )
    p.add_argument(
        "--passage_field_separator",
        default=None,
        help="between title and text (default: the model's)",
    )
    p.add_argument(
        "--pooling",
        "--sentence_pooling_method",
        default=None,
        help="cls|mean|last|eos (default: the model's)",
    )
    p.add_argument(
        "--normalize",
        "--normalized",
        action="store_true",
        default=None,
        help="L2-normalize the vectors (default: the model's setting)",
    )
    p.add_argument(
        "--append_eos_token",
        action="store_true",
        default=None,
        help="append the EOS token to every text (default: the model's setting)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 where the device does it natively, else fp32",
    )
    p.add_argument("--bf16", action="store_true", help="same as --precision bf16")
    p.add_argument("--fp16", action="store_true", help="GPU only")
    p.add_argument(
        "--embedding_dtype",
        choices=("float32", "float16"),
        default="float32",
        help="dtype of the saved vectors",
    )
    p.add_argument("--truncate_dim", type=int, default=None, help="keep the first d dims")
    p.add_argument(
        "--num_shards",
        "--encode_num_shard",
        "--dataset_number_of_shards",
        type=int,
        default=None,
        help="split the input into this many shards (default: the torchrun world size, or 1)",
    )
    p.add_argument(
        "--shard_index",
        "--encode_shard_index",
        "--dataset_shard_index",
        type=int,
        default=None,
        help="which shard to encode, from 0 (default: the torchrun rank, or 0)",
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
    train = None
    if train_flags:
        from densekit.arguments import build_parser as train_parser

        train = train_parser()
    peer_apply.add_to_parser(p, "encode", train)  # peer names; unused ones reported
    return p


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[EncodeJob, EncoderSpec]:
    """The job and the encoder the flags describe (peer names mapped, values checked)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # perhaps training flags, which Tevatron's encode driver accepts: parse again
        backends = list(parser._option_string_actions["--backend"].choices)
        full = build_parser(parser.prog, parser.description or "", backends, train_flags=True)
        args = full.parse_args(argv)
    peer_apply.apply_encode(args)
    import torch

    from densekit.encoders import EncoderSpec
    from densekit.encoders.job import EncodeJob

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
