"""The recipe's opt-in distillation round (``--distill true``, with ``--rerank true``).

The cross-encoder of the rerank stage scores every (query, passage) pair of the mined
training file (train queries only; its raw logits become ``pos_scores``/``neg_scores``), and a
second bi-encoder round starts from the fine-tuned model and learns those scores with the KL
``distill`` loss over groups of one positive and ``distill_group_size - 1`` mined negatives.
Like the first round it is evaluated exactly on dev during training and its best checkpoint
kept. The round is **kept only if dev says so**: its best dev nDCG@10 must beat the first
round's. Then its model (``distilled/``) replaces the fine-tuned one as the recipe's dense
first stage (the ``fine-tuned`` rows, the hybrids, the searcher folder and the test split);
otherwise the first round stays and ``distilled/`` is removed. ``results.json``'s ``distill``
records both dev scores, the evaluations and the decision either way.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from densekit.atomic import atomic_open
from densekit.data.readers import load_train
from densekit.data.runs import Run
from densekit.errors import DataError
from densekit.evaluation.exact import ExactEvaluator
from densekit.evaluation.metrics import evaluate
from densekit.modeling.reranker import CrossEncoderReranker
from densekit.recipes.config import RecipeConfig
from densekit.recipes.fine_tuning import beats_zero_shot, fine_tune, kept_run
from densekit.recipes.model_index import model_run
from densekit.recipes.results import METRICS
from densekit.recipes.resume import RecipeFolder, plain_run

logger = logging.getLogger("densekit.recipe")

FOLDER = "distilled"
SCORED_FILE = "train.distill.jsonl"
ROWS_PER_CHUNK = 64  # training rows scored together (their pairs sorted by length)
SCORING_BATCH = 32  # pairs per forward pass


@dataclass
class DistillOutcome:
    """What the dev split decided, with the round's dev run (of its kept checkpoint)."""

    kept: bool
    run: Run = field(repr=False)
    summary: dict[str, Any] = field(default_factory=dict)


def score_training_file(
    reranker: CrossEncoderReranker, train_file: Path, out_file: Path, batch_size: int = 32
) -> int:
    """Write ``train_file`` again with the cross-encoder's logit for every positive and
    negative as ``pos_scores``/``neg_scores`` (grades kept); returns the pairs scored."""
    records = load_train(train_file)
    pairs = 0
    with atomic_open(out_file, "w", encoding="utf-8") as handle:
        rows = iter(records)
        while chunk := list(islice(rows, ROWS_PER_CHUNK)):
            queries, passages = [], []
            for row in chunk:
                for passage in row["pos"] + row["neg"]:
                    if passage["text"] is None:
                        raise DataError(str(train_file), "passages given by id only: no text")
                    queries.append(row["query"])
                    passages.append((passage["title"] or "", passage["text"] or ""))
            scores = reranker.score(queries, passages, batch_size, activation=False).tolist()
            pairs += len(scores)
            for row in chunk:
                positives, negatives = len(row["pos"]), len(row["neg"])
                record = {
                    "query_id": row["query_id"],
                    "query": row["query"],
                    "positive_passages": row["pos"],
                    "negative_passages": row["neg"],
                    "pos_scores": scores[:positives],
                    "neg_scores": scores[positives : positives + negatives],
                }
                if row["pos_grades"]:
                    record["pos_grades"] = row["pos_grades"]
                if row["prompt"]:
                    record["prompt"] = row["prompt"]
                scores = scores[positives + negatives :]
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return pairs


def distill_stage(
    config: RecipeConfig,
    folder: RecipeFolder,
    stage_key: str,
    first_round: float,
    reranker: CrossEncoderReranker,
    train_file: Path,
    evaluator: ExactEvaluator,
) -> DistillOutcome:
    """Score the mined file, train the second round from ``work/model`` into
    ``work/distilled``, and keep it only if its best dev nDCG@10 beats ``first_round``."""
    model_dir = folder.work / FOLDER
    done = folder.done("distill", stage_key)
    saved = (model_dir / "config.json").is_file()
    if done is not None and (saved or not done["summary"]["kept"]):
        return DistillOutcome(done["summary"]["kept"], done["run"], done["summary"])
    shutil.rmtree(model_dir, ignore_errors=True)
    start = time.perf_counter()
    scored = folder.work / SCORED_FILE
    pairs = score_training_file(reranker, train_file, scored, SCORING_BATCH)
    scoring = time.perf_counter() - start
    kept = fine_tune(
        config,
        str(folder.work / "model"),
        scored,
        model_dir,
        evaluator,
        loss="distill",
        group_size=config.distill_group_size,
        epochs=config.distill_epochs,
        learning_rate=config.distill_learning_rate,
    )
    run = kept_run(kept, evaluator)
    if run is None:  # training did not evaluate: score the final weights once
        run = model_run(config, str(model_dir), evaluator.corpus, evaluator.queries)
    best = kept["best"] if kept["best"] is not None else _ndcg(run, evaluator)
    keep = beats_zero_shot({"best": best}, first_round)
    summary = {
        "kept": keep,
        "metric": METRICS[0],
        "first_round": first_round,
        "second_round": best,
        "kept_checkpoint": kept,
        "pairs_scored": pairs,
        "scoring_seconds": scoring,
        "seconds": time.perf_counter() - start,
    }
    logger.info(
        "distillation round: dev %s %.4f against the first round's %.4f: %s",
        METRICS[0],
        best,
        first_round,
        "kept" if keep else "dropped",
    )
    if not keep:
        shutil.rmtree(model_dir, ignore_errors=True)
    scored.unlink(missing_ok=True)
    folder.record("distill", stage_key, {"summary": summary, "run": plain_run(run)})
    return DistillOutcome(keep, run, summary)


def _ndcg(run: Run, evaluator: ExactEvaluator) -> float:
    return evaluate(run, evaluator.qrels, [METRICS[0]])[1][METRICS[0]]


def forget(work: Path) -> None:
    """Drop what an earlier run with ``--distill true`` left (a stale second round must not
    reach the output of a recipe run without it)."""
    shutil.rmtree(work / FOLDER, ignore_errors=True)
    (work / SCORED_FILE).unlink(missing_ok=True)
