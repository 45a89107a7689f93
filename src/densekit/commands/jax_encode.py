"""``densekit jax-encode``: ``densekit encode`` on the JAX path (same flags, same output files).

Also ``python -m densekit.jax_encode``. Batches are split over the local devices; in a
multi-host run (``JAX_COORDINATOR_ADDRESS`` set) each process encodes its own shard unless
``--num_shards/--shard_index`` say otherwise. ``--precision auto`` computes in bf16 on TPU and
GPU, fp32 on CPU. Needs ``pip install 'densekit[jax]'``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from densekit.commands import run_guarded
from densekit.commands.encode import build_parser as build_encode_parser
from densekit.commands.encode import encode_with, parse_args
from densekit.errors import ConfigError

logger = logging.getLogger("densekit.jax_encode")


def build_parser() -> argparse.ArgumentParser:
    parser = build_encode_parser()
    parser.prog = "densekit jax-encode"
    parser.description = __doc__.splitlines()[0]
    return parser


def _jax_encoder(args: argparse.Namespace):
    """The Flax encoder the flags name, and whether it computes in bf16."""
    import jax

    from densekit.jax.encoder import JaxEncoder
    from densekit.jax.run import compute_dtype

    dtype = compute_dtype("bf16" if args.bf16 else args.precision)
    encoder = JaxEncoder.from_pretrained(
        args.model_name_or_path,
        dtype=dtype,
        pooling=args.pooling,
        normalize=args.normalize,
        query_prefix=args.query_prefix,
        passage_prefix=args.passage_prefix,
        passage_field_separator=args.passage_field_separator,
        query_max_len=args.query_max_len,
        passage_max_len=args.passage_max_len,
        append_eos_token=args.append_eos_token,
    )
    logger.info("encoding on %d %s device(s)", jax.local_device_count(), jax.default_backend())
    return encoder, dtype != jax.numpy.float32


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, build_parser())
    for bad, flag in (
        (args.device is not None, "--device (JAX picks devices; set JAX_PLATFORMS=cpu|tpu|cuda)"),
        (args.lora_name_or_path is not None, "--lora_name_or_path (merge it with merge-lora)"),
        (args.backend != "torch", "--backend (densekit encode runs onnx/openvino)"),
    ):
        if bad:
            raise ConfigError(f"{flag} is not on the JAX path")
    from densekit.jax import require_jax

    require_jax()
    import jax

    from densekit.jax.sharding import initialize_distributed

    if initialize_distributed() and args.num_shards is None and args.shard_index is None:
        args.num_shards, args.shard_index = jax.process_count(), jax.process_index()
    return encode_with(args, _jax_encoder)


if __name__ == "__main__":
    sys.exit(run_guarded(main))
