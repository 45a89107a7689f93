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


def evaluate_checkpoints(
    run_dir: str | Path,
    corpus: datasets.Dataset,
    queries: datasets.Dataset,
    qrels: dict[str, dict[str, int]],
    metrics: Sequence[str],
    depth: int = 100,
    bf16: bool = False,
) -> dict[str, dict[str, float]]:
    """``{checkpoint name or "final": {metric: mean}}`` in step order."""
    rows: dict[str, dict[str, float]] = {}
    folders, _ = model_folders(run_dir)
    for folder in folders:
        encoder = DenseEncoder.from_pretrained(str(folder))
        run = dense_run(encoder, load_tokenizer(str(folder)), corpus, queries, depth, bf16)
        _, mean = evaluate(run, qrels, metrics)
        name = "final" if folder == Path(run_dir) else folder.name
        rows[name] = mean
        logger.info("%s: %s", name, ", ".join(f"{m} {v:.4f}" for m, v in mean.items()))
    return rows
