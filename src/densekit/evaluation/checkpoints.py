"""Score every checkpoint of a training run (PaddleNLP's ``--evaluate_all``).

Each complete ``checkpoint-N`` folder (and the final model) is encoded, searched exactly and
evaluated on one corpus, query set and qrels; incomplete checkpoints (a run killed while
saving) are skipped and named.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import datasets

from densekit.encoders.batched import BatchedTextEncoder
from densekit.errors import ConfigError
from densekit.evaluation.metrics import evaluate
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.retrieval.dense import dense_run
from densekit.training.checkpoints import checkpoint_folders, has_model

logger = logging.getLogger(__name__)


def model_folders(run_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Complete checkpoints by step, then the run folder itself when it holds a final model;
    and the names of the incomplete checkpoints that were skipped."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    found = checkpoint_folders(folder)
    complete = [f for f in found if has_model(f)]
    skipped = [f.name for f in found if f not in complete]
    if has_model(folder):
        complete.append(folder)
    if not complete:
        detail = f" (incomplete: {', '.join(skipped)})" if skipped else ""
        raise ConfigError(
            f"{folder} holds no complete checkpoint-* folder and no final model{detail}"
        )
    if skipped:
        logger.warning("skipping incomplete checkpoint(s): %s", ", ".join(skipped))
    return complete, skipped


def load_towers(query_model: str | Path, passage_model: str | Path | None = None, **settings):
    """One encoder from a query model folder and (when different) a passage model folder: the
    untied towers of PaddleNLP's ``--query_model`` / ``--passage_model``."""
    encoder = DenseEncoder.from_pretrained(str(query_model), **settings)
    if passage_model is None or Path(passage_model).resolve() == Path(query_model).resolve():
        return encoder
    passages = DenseEncoder.from_pretrained(str(passage_model), **settings)
    dims = [m.config.hidden_size for m in (encoder.query_model, passages.passage_model)]
    if dims[0] != dims[1]:
        raise ConfigError(
            f"{query_model} gives {dims[0]}-dim vectors but {passage_model} gives {dims[1]}"
        )
    if passages.pooler is not None or encoder.pooler is not None:
        raise ConfigError("separate query and passage models with a projection are not supported")
    encoder.passage_model = passages.passage_model
    encoder.settings.untie_encoder = True
    # the passage side is formatted and truncated as the passage model says
    encoder.settings.passage_max_len = passages.settings.passage_max_len
    encoder.settings.passage_prefix = passages.settings.passage_prefix
    return encoder


def score_model(
    query_model: str | Path,
    passage_model: str | Path | None,
    data: tuple[datasets.Dataset, datasets.Dataset, dict[str, dict[str, int]]],
    metrics: Sequence[str],
    depth: int = 100,
    bf16: bool = False,
    **settings,
) -> dict[str, float]:
    """Mean metrics of one (query model, passage model) pair on ``(corpus, queries, qrels)``."""
    corpus, queries, qrels = data
    encoder = load_towers(query_model, passage_model, **settings)
    tokenizer = load_tokenizer(str(query_model))
    run = dense_run(BatchedTextEncoder(encoder, tokenizer, "torch", bf16), corpus, queries, depth)
    return evaluate(run, qrels, metrics)[1]


def evaluate_checkpoints(
    run_dir: str | Path,
    corpus: datasets.Dataset,
    queries: datasets.Dataset,
    qrels: dict[str, dict[str, int]],
    metrics: Sequence[str],
    depth: int = 100,
    bf16: bool = False,
    **settings,
) -> dict[str, dict[str, float]]:
    """``{checkpoint name or "final": {metric: mean}}`` in step order."""
    rows: dict[str, dict[str, float]] = {}
    folders, _ = model_folders(run_dir)
    for folder in folders:
        name = "final" if folder == Path(run_dir) else folder.name
        rows[name] = score_model(
            folder, None, (corpus, queries, qrels), metrics, depth, bf16, **settings
        )
        logger.info("%s: %s", name, ", ".join(f"{m} {v:.4f}" for m, v in rows[name].items()))
    return rows


def best_row(rows: dict[str, dict[str, float]], metric: str) -> str:
    """The name of the row with the highest ``metric`` (the earliest on ties)."""
    return max(rows, key=lambda name: (rows[name][metric], -list(rows).index(name)))
