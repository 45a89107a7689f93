"""``densekit encode``: texts -> ``.npy`` vectors + ids, written atomically.

Texts are read from the Arrow table and vectors written into the ``.npy`` one window at a time,
so memory does not grow with the corpus. ``--backend`` picks any registered encoder backend
(torch, onnx, openvino, jax, or one registered with ``densekit.encoders.register_backend``).

Under ``torchrun`` every rank encodes its own shard without flags; a shard already on disk for
the same source and kind is skipped, so an interrupted job resumes.
"""

from __future__ import annotations

import sys

from densekit.commands import run_guarded
from densekit.commands._encode_flags import build_parser as _build
from densekit.commands._encode_flags import parse, registered_backends


def build_parser(train_flags: bool = False):
    """The parser; ``train_flags`` adds the training flags, which parsing adds when needed."""
    return _build("densekit encode", __doc__, registered_backends(), train_flags)


def main(argv: list[str] | None = None) -> int:
    job, spec = parse(build_parser(), argv)
    from densekit.encoders.job import run_encode_job
    from densekit.encoders.registry import check_backend

    check_backend(spec)
    run_encode_job(job, spec)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
