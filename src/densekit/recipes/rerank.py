"""The recipe's opt-in rerank stage (``--rerank true``): a cross-encoder on the first stage's hits.

A cross-encoder is trained from the recipe's base model (a fresh one-label head) on the mined
training file, so on the train queries only, with the library function ``densekit
train-reranker`` runs (:func:`densekit.training.reranker_trainer.train_reranker`). It reranks
the top ``rerank_depth`` of the first stage that scores best on dev nDCG@10 among those the
searcher folder serves (``bm25+fine-tuned`` -> hybrid, ``fine-tuned`` -> dense, ``bm25``), giving
the ``rerank`` row; the ``rerank+hybrid`` row fuses the reranker's scores with that first stage
(weighted min-max, the weight tuned on dev as ``densekit fuse --tune_on`` does). The test split
reuses the dev choices.

The reranker's training length is chosen on dev too: during training it reranks that first
stage's dev run (every pair scored exactly) at :data:`EVALUATIONS` evenly spaced points (the last
at the end of training), and the checkpoint with the best dev nDCG@10 is kept. To stay cheap the
in-training evaluations rerank the top ``min(rerank_depth, EVAL_DEPTH)`` hits, not the full
depth (nDCG@10 needs the top 10 right; the rerank row itself uses ``rerank_depth``); checkpoints
hold only weights and are removed once the kept one is saved. ``results.json``'s
``rerank.training`` lists the evaluations (``evaluations``, ``best_step``, ``eval_depth``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import datasets
import torch

from densekit.data.runs import Run
from densekit.evaluation.fusion_tuning import tune_weights
from densekit.evaluation.rerank_evaluator import RerankEvaluator
from densekit.modeling.reranker import CONFIG_NAME, CrossEncoderReranker
from densekit.recipes.config import RecipeConfig
from densekit.recipes.results import METRICS, Recorder
from densekit.recipes.resume import RecipeFolder, plain_run
from densekit.retrieval.fusion import fuse
from densekit.training.reranker_trainer import (
    RerankerRun,
    evaluations,
    kept_evaluation,
    train_reranker,
)

logger = logging.getLogger("densekit.recipe")

# the recipe's rows a searcher folder can serve, with their mode; ties keep this order
FIRST_STAGES = {"bm25+fine-tuned": "hybrid", "fine-tuned": "dense", "bm25": "bm25"}
FOLDER = "reranker"
GRID_STEP = 0.1
EVALUATIONS = 3  # dev evaluations during the reranker's training (config: rerank_evaluations)
EVAL_DEPTH = 30  # hits reranked per dev query by them, at most (config: rerank_eval_depth)


@dataclass
class RerankChoice:
    """What the dev split decided: the first stage, the fusion weights (first stage, reranker),
    the depth, and the reranker itself (loaded once, to score the test split too)."""

    first_stage: str
    weights: tuple[float, ...]
    depth: int
    reranker: CrossEncoderReranker = field(repr=False)
    training: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "first_stage": self.first_stage,
            "searcher_mode": FIRST_STAGES[self.first_stage],
            "depth": self.depth,
            "rerank_weight": self.weights[1],
            "training": self.training,
        }


def choose_first_stage(dev: Recorder) -> str:
    """The servable system with the best dev nDCG@10 (ties: the order of ``FIRST_STAGES``)."""
    return max(FIRST_STAGES, key=lambda system: dev.results[system][METRICS[0]])


def eval_depth(config: RecipeConfig) -> int:
    """Hits per dev query reranked by the in-training evaluations."""
    return min(config.rerank_depth, int(getattr(config, "rerank_eval_depth", EVAL_DEPTH)))


def dev_evaluator(
    config: RecipeConfig,
    first: Run,
    queries: datasets.Dataset,
    qrels: dict[str, dict[str, int]],
    document: Callable[[str], tuple[str, str]],
) -> RerankEvaluator | None:
    """The in-training evaluator on the dev first stage (None when no judged dev query has
    hits: the reranker then trains its full length)."""
    texts = dict(zip(queries["query_id"], queries["text"], strict=True))
    judged = {q for q, rels in qrels.items() if rels and q in texts and first.get(q)}
    if not judged:
        logger.warning("no judged dev query has first-stage hits: the reranker trains unevaluated")
        return None
    return RerankEvaluator(
        {q: first[q] for q in judged},
        texts,
        qrels,
        document,
        metrics=[METRICS[0]],
        depth=eval_depth(config),
    )


def train_cross_encoder(
    config: RecipeConfig,
    base: str,
    train_file: Path,
    folder: Path,
    evaluator: RerankEvaluator | None = None,
) -> dict[str, Any]:
    """Train a cross-encoder from ``base`` on ``train_file`` (listwise loss over groups of one
    positive and ``rerank_group_size - 1`` mined negatives) into ``folder``; with an
    ``evaluator``, evaluated :data:`EVALUATIONS` times and the best checkpoint kept."""
    from densekit import precision

    shutil.rmtree(folder, ignore_errors=True)  # what a killed training left
    selection: dict[str, Any] = {"save_strategy": "no"}
    if evaluator is not None:
        every = 1.0 / max(int(getattr(config, "rerank_evaluations", EVALUATIONS)), 1)
        selection = {
            "eval_strategy": "steps",
            "eval_steps": every,  # a fraction of all steps: HF evaluates at the end too
            "save_strategy": "steps",
            "save_steps": every,
            "save_only_model": True,
            "save_total_limit": 1,  # the best is kept besides the last
            "load_best_model_at_end": True,
            "metric_for_best_model": METRICS[0],
        }
    fresh_head = not getattr(config, "rerank_model", None)
    chunk = chunk_size(config.rerank_batch_size, config.rerank_chunk_size)
    run = RerankerRun(
        model_name_or_path=base,
        dataset_path=str(train_file),
        output_dir=str(folder),
        train_group_size=config.rerank_group_size,
        max_len=config.rerank_max_len,
        loss="listwise",
        positive_sampling=config.positive_sampling,
        overwrite_output_dir=True,
        head_learning_rate=config.rerank_head_learning_rate if fresh_head else None,
        training={
            "learning_rate": config.rerank_learning_rate,
            "num_train_epochs": config.rerank_epochs,
            "per_device_train_batch_size": chunk,
            "gradient_accumulation_steps": config.rerank_batch_size // chunk,
            "warmup_steps": config.warmup_ratio,
            "logging_steps": 5,
            "seed": config.seed,
            "bf16": precision.resolve(config.precision) == "bf16",
            **selection,
        },
    )
    trainer = train_reranker(run, evaluator=evaluator)
    for checkpoint in folder.glob("checkpoint-*"):  # the kept weights are in folder itself
        shutil.rmtree(checkpoint, ignore_errors=True)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    out: dict[str, Any] = {"steps": trainer.state.global_step, "losses": losses}
    if evaluator is not None:
        found = evaluations(trainer.state.log_history)
        kept = kept_evaluation(trainer)
        out.update(
            evaluations=found,
            best_step=kept["step"] if kept else None,
            eval_depth=evaluator.depth,
        )
    return out


def chunk_size(batch: int, most: int) -> int:
    """The largest divisor of ``batch`` not above ``most``: full micro-batches of that many
    queries accumulate to exactly the batch's gradient (a listwise group never spans queries;
    an epoch's last, short batch weighs its queries by micro-batch, as the HF Trainer does)."""
    size = next(size for size in range(min(batch, most), 0, -1) if batch % size == 0)
    if size < min(batch, most):
        logger.warning(
            "--rerank_chunk_size %d does not divide --rerank_batch_size %d: chunks of %d",
            most,
            batch,
            size,
        )
    return size


def top(run: Run, depth: int) -> Run:
    """Each query's best ``depth`` hits, best first (equal scores keep the run's order)."""
    return {
        qid: dict(islice(sorted(hits.items(), key=lambda hit: -hit[1]), depth))
        for qid, hits in run.items()
    }


def corpus_documents(corpus: datasets.Dataset) -> Callable[[str], tuple[str, str]]:
    """``docid -> (title, text)`` as the searcher folder's corpus store gives them."""
    table = {
        docid: (title or "", text or "")
        for docid, title, text in zip(corpus["docid"], corpus["title"], corpus["text"], strict=True)
    }
    return lambda docid: table.get(docid, ("", ""))


def rerank(
    reranker: CrossEncoderReranker,
    first: Run,
    queries: datasets.Dataset,
    document: Callable[[str], tuple[str, str]],
    depth: int,
) -> Run:
    """The top ``depth`` of ``first`` reordered by the cross-encoder's scores."""
    texts = dict(zip(queries["query_id"], queries["text"], strict=True))
    return dict(reranker.rerank_run(top(first, depth).items(), texts, document, depth=depth))


def fuse_reranked(
    first: Run,
    reranked: Run,
    depth: int,
    qrels: dict[str, dict[str, int]] | None = None,
    weights: tuple[float, ...] | None = None,
) -> tuple[Run, tuple[float, ...]]:
    """Weighted min-max fusion of the first stage's top ``depth`` with their reranked scores;
    without ``weights`` they are tuned on ``qrels`` (``densekit fuse --tune_on``'s grid)."""
    pair = [top(first, depth), reranked]
    if weights is None:
        weights = tune_weights(pair, qrels or {}, METRICS[0], GRID_STEP, "minmax", depth).weights
    return fuse(pair, "weighted", weights=weights, normalize="minmax", depth=depth).run, weights


def train_stage(
    config: RecipeConfig,
    folder: RecipeFolder,
    keys: dict[str, str],
    dev: Recorder,
    corpus: datasets.Dataset,
    queries: datasets.Dataset,
    base: str,
    train_file: Path,
    seconds: dict[str, float],
) -> tuple[CrossEncoderReranker, dict[str, Any]]:
    """Train (or reuse) the cross-encoder, evaluated on the dev-best first stage; returns it
    loaded, with what its training recorded."""
    model_dir = folder.work / FOLDER
    first = choose_first_stage(dev)
    done = folder.done("reranker", keys["reranker"])
    if done is None or not (model_dir / CONFIG_NAME).is_file():
        logger.info("== reranker (evaluated on the dev top %d of %s)", eval_depth(config), first)
        start = time.perf_counter()
        document = corpus_documents(corpus)
        evaluator = dev_evaluator(config, dev.runs[first], queries, dev.qrels, document)
        training = train_cross_encoder(config, base, train_file, model_dir, evaluator)
        if evaluator is not None:
            training["eval_first_stage"] = first
        seconds["reranker"] = time.perf_counter() - start
        folder.record("reranker", keys["reranker"], {"training": training, **seconds})
    else:
        training, seconds["reranker"] = done["training"], done["reranker"]
    reranker = CrossEncoderReranker.from_pretrained(model_dir)
    if torch.cuda.is_available():  # scoring dev (and the mined file, --distill) there
        reranker.to("cuda")
    reranker.set_precision(config.precision)
    return reranker, training


def rerank_dev(
    dev: Recorder,
    trained: tuple[CrossEncoderReranker, dict[str, Any]],
    depth: int,
    data: tuple[datasets.Dataset, datasets.Dataset],
    resume: tuple[RecipeFolder, str],
    seconds: dict[str, float],
) -> RerankChoice:
    """Rerank the dev-best first stage with the ``trained`` cross-encoder (from
    :func:`train_stage`) and tune the fusion; records the ``rerank`` and ``rerank+hybrid`` rows
    in ``dev``. ``data``: the corpus and the dev queries; ``resume``: the recipe folder and the
    stage's key."""
    (reranker, training), (corpus, queries), (folder, stage_key) = trained, data, resume
    first = choose_first_stage(dev)
    done = folder.done("rerank", stage_key)
    if done is None or done["first_stage"] != first:
        logger.info("== rerank (the top %d of %s)", depth, first)
        start = time.perf_counter()
        reranked = rerank(reranker, dev.runs[first], queries, corpus_documents(corpus), depth)
        seconds["rerank"] = time.perf_counter() - start
        value = {"first_stage": first, "run": plain_run(reranked), "rerank": seconds["rerank"]}
        folder.record("rerank", stage_key, value)
    else:
        reranked, seconds["rerank"] = done["run"], done["rerank"]
    dev("rerank", reranked, seconds["reranker"] + seconds["rerank"])
    dev.results["rerank"].update(first_stage=first, depth=depth)
    start = time.perf_counter()
    fused, weights = fuse_reranked(dev.runs[first], reranked, depth, dev.qrels)
    seconds["rerank fusion"] = time.perf_counter() - start
    record_fused(dev, fused, seconds["rerank fusion"], first, weights, depth)
    logger.info("reranked %s; rerank+hybrid weight %.2f", first, weights[1])
    return RerankChoice(first, weights, depth, reranker, training)


def record_fused(
    record: Recorder,
    fused: Run,
    seconds: float,
    first: str,
    weights: tuple[float, ...],
    depth: int,
) -> None:
    record("rerank+hybrid", fused, seconds)
    record.results["rerank+hybrid"].update(rerank_weight=weights[1], depth=depth, first_stage=first)


def rerank_split(
    record: Recorder,
    choice: RerankChoice,
    corpus: datasets.Dataset,
    queries: datasets.Dataset,
) -> None:
    """The test split's ``rerank`` and ``rerank+hybrid`` rows, with every choice made on dev
    (first stage, depth, fusion weight); ``record`` already holds the first stage's run."""
    start = time.perf_counter()
    first, depth = choice.first_stage, choice.depth
    document = corpus_documents(corpus)
    reranked = rerank(choice.reranker, record.runs[first], queries, document, depth)
    record("rerank", reranked, time.perf_counter() - start)
    record.results["rerank"].update(first_stage=first, depth=depth)
    start = time.perf_counter()
    fused, _ = fuse_reranked(record.runs[first], reranked, depth, weights=choice.weights)
    record_fused(record, fused, time.perf_counter() - start, first, choice.weights, depth)


def forget(work: Path) -> None:
    """Drop what an earlier run with ``--rerank true`` left in the work folder (a recipe rerun
    without it must not move a stale reranker or its runs into the output)."""
    shutil.rmtree(work / FOLDER, ignore_errors=True)
    for stale in (work / "runs").glob("rerank*.trec"):
        stale.unlink()
