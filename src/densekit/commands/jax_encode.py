"""``densekit jax-encode``: ``densekit encode`` on the JAX path (same flags, same output files).

Also ``python -m densekit.jax_encode``; the same as ``densekit encode --backend jax``. Batches are
split over the local devices; in a multi-host run (``JAX_COORDINATOR_ADDRESS`` set) each process
encodes its own shard unless ``--num_shards/--shard_index`` say otherwise. ``--precision auto``
computes in bf16 on TPU and GPU, fp32 on CPU. Needs ``pip install 'densekit[jax]'``.
"""

from __future__ import annotations

import sys

from densekit.commands import run_guarded
from densekit.commands._encode_flags import build_parser as _build
from densekit.commands._encode_flags import parse


def build_parser(train_flags: bool = False):
    """The parser; ``train_flags`` adds the training flags, which parsing adds when needed."""
    return _build("densekit jax-encode", __doc__, ["jax"], train_flags)


def main(argv: list[str] | None = None) -> int:
    job, spec = parse(build_parser(), argv)
    from densekit.encoders.job import run_encode_job
    from densekit.encoders.registry import check_backend

    check_backend(spec)
    import jax

    from densekit.jax.sharding import initialize_distributed

    if initialize_distributed() and job.num_shards is None and job.shard_index is None:
        job.num_shards, job.shard_index = jax.process_count(), jax.process_index()
    run_encode_job(job, spec)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
