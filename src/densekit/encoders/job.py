"""The encode job: a corpus or query file -> an embeddings folder, with any encoder backend.

``densekit encode``, ``densekit jax-encode`` and anything else that writes embeddings call
:func:`run_encode_job` with typed settings. Texts are read from the Arrow table one window at a
time and written into the ``.npy`` as they come, so memory does not grow with the corpus; under
``torchrun`` (or with ``num_shards``) each process writes its own ``shard-i-of-n`` folder, and a
complete folder for the same source and kind is skipped, so an interrupted job resumes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets

from densekit.atomic import check_target
from densekit.data.qrels import keep_judged, load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.encoders.interface import Calibration, EncoderSpec
from densekit.encoders.registry import load_encoder
from densekit.encoders.streaming import stream_table
from densekit.errors import ConfigError
from densekit.inference.backends.common import sample_rows
from densekit.inference.encode import truncate
from densekit.retrieval.embeddings import META_FILE, read_meta, stream_embeddings

logger = logging.getLogger("densekit.encode")
CALIBRATION_SIZE = 300


@dataclass
class EncodeJob:
    """What to encode and where to write it (the encoder is chosen by an :class:`EncoderSpec`)."""

    dataset_path: str
    output_path: str
    is_query: bool = False
    qrels: str | None = None
    batch_size: int = 64
    embedding_dtype: str = "float32"
    truncate_dim: int | None = None
    num_shards: int | None = None
    shard_index: int | None = None
    overwrite: bool = False

    def check(self) -> None:
        """Refuse values no encode can run with, before anything is read."""
        if self.batch_size < 1:
            raise ConfigError(f"--batch_size must be positive, got {self.batch_size}")
        if self.truncate_dim is not None and self.truncate_dim < 1:
            raise ConfigError(f"--truncate_dim must be positive, got {self.truncate_dim}")

    def shard_plan(self) -> tuple[int, int]:
        """``(number of shards, this shard)``: the flags', else torchrun's rank and world size."""
        num, index = self.num_shards, self.shard_index
        if num is None and index is None:
            num, index = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
        num, index = num or 1, index or 0
        if num < 1 or not 0 <= index < num:
            raise ConfigError(f"--shard_index {index} is outside 0..{num - 1}")
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


def source_name(path: str) -> str:
    """The data file as recorded in ``meta.json`` (absolute when it is a local path)."""
    return str(Path(path).resolve()) if Path(path).exists() else str(path)


def _already_done(out: Path, job: EncodeJob) -> bool:
    """A complete folder for the same source and kind is skipped; any other is refused."""
    if not (out / META_FILE).is_file() or job.overwrite:
        return False
    meta = read_meta(out)
    kind = "queries" if job.is_query else "corpus"
    done_kind = "queries" if meta.get("is_query") else "corpus"
    done_source = meta.get("source")
    if done_kind != kind or (
        done_source and source_name(done_source) != source_name(job.dataset_path)
    ):
        raise ConfigError(
            f"{out} already holds {done_kind} vectors of {done_source}; "
            "pass --overwrite to replace them or choose another --encode_output_path"
        )
    return True


def read_table(job: EncodeJob, num_shards: int = 1, shard_index: int = 0) -> datasets.Dataset:
    """The job's queries (judged ones only with ``qrels``) or corpus, this shard's rows."""
    if job.is_query:
        table = load_queries(job.dataset_path)
        if job.qrels:
            table = keep_judged(table, load_qrels(job.qrels), job.qrels)
    else:
        table = load_corpus(job.dataset_path)
    if num_shards > 1:
        table = table.shard(num_shards, shard_index, contiguous=True)
    return table


def calibration_sample(table: datasets.Dataset, is_query: bool, size: int) -> Calibration:
    """A fixed random sample of ``table``'s texts (int8 calibration)."""
    rows = table.select(sample_rows(len(table), size)).to_dict()
    return Calibration(rows["text"], None if is_query else rows["title"], is_query)


def run_encode_job(job: EncodeJob, spec: EncoderSpec) -> Path:
    """Encode as ``job`` says with the encoder ``spec`` names; the folder written (or kept)."""
    job.check()
    num_shards, shard_index = job.shard_plan()
    _check_split(Path(job.output_path), num_shards)
    out = Path(job.output_path)
    if num_shards > 1:
        out = out / f"shard-{shard_index:05d}-of-{num_shards:05d}"
    if _already_done(out, job):
        print(f"densekit encode: {out} is complete; skipped (--overwrite to redo)")
        return out
    check_target(out, folder=True, overwrite=job.overwrite)
    # Data first: a bad file fails in a second, before any model is loaded.
    table = read_table(job, num_shards, shard_index)
    if spec.quantize and spec.backend == "openvino" and spec.calibration is None:
        full = read_table(job) if num_shards > 1 else table
        spec.calibration = calibration_sample(full, job.is_query, CALIBRATION_SIZE)
    encoder = load_encoder(spec)
    meta = {
        "model": spec.model,
        "is_query": job.is_query,
        "normalized": encoder.settings.normalize,
        "precision": getattr(encoder, "precision", "fp32"),
        **({"backend": encoder.backend} if spec.backend != "torch" else {}),
        "shard": [shard_index, num_shards],
        "source": source_name(job.dataset_path),
    }
    windows = stream_table(encoder, table, job.is_query, job.batch_size)
    with stream_embeddings(
        out, len(table), meta, job.embedding_dtype, overwrite=job.overwrite
    ) as writer:
        for ids, vectors in windows:
            if job.truncate_dim:
                vectors = truncate(vectors, job.truncate_dim, encoder.settings.normalize)
            writer.append(ids, vectors)
    logger.info("wrote %d vectors of dim %d to %s", writer.rows, writer.dim, out)
    return out
