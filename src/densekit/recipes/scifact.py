"""The SciFact recipe: BM25 -> zero-shot MiniLM -> mined negatives -> fine-tune -> evaluate.

The whole loop on the SciFact data shipped inside the package (dev split carved from the
training queries by a fixed seed), composed from densekit's Python API, one function per stage.
Writes the table, the runs and the model to ``output_dir``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets

from densekit.arguments import DataArguments, ModelArguments, RetrievalTrainingArguments
from densekit.atomic import atomic_open
from densekit.data.qrels import keep_judged, load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.data.runs import Run, write_run
from densekit.errors import ConfigError
from densekit.evaluation.metrics import evaluate, format_table
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.resources import bundled_data_dir, bundled_model_path
from densekit.retrieval.bm25 import bm25_run
from densekit.retrieval.dense import dense_run
from densekit.retrieval.mine import MineReport, mine_negatives, write_training_file
from densekit.training.run import train

logger = logging.getLogger("densekit.recipe")

METRICS = ["ndcg@10", "mrr@10", "recall@100"]
Qrels = dict[str, dict[str, int]]


def split_qrels(qrels: Qrels, dev_size: int, seed: int) -> tuple[Qrels, Qrels]:
    """(train, dev) qrels: ``dev_size`` queries drawn by ``random.Random(seed)`` from sorted ids."""
    ids = sorted(qrels, key=lambda q: (len(q), q))
    dev = set(random.Random(seed).sample(ids, dev_size))
    return (
        {q: qrels[q] for q in ids if q not in dev},
        {q: qrels[q] for q in ids if q in dev},
    )


@dataclass
class RecipeConfig:
    """Knobs of the SciFact recipe; ``shrink`` turns it into the few-minute ``--quick`` run."""

    data_dir: Path = field(default_factory=bundled_data_dir)
    output_dir: Path = Path("runs/scifact")
    model: str | None = None
    dev_size: int = 200
    seed: int = 2026
    epochs: float = 1.0
    batch_size: int = 32
    group_size: int = 4
    learning_rate: float = 5e-5
    temperature: float = 0.05
    query_max_len: int = 64
    passage_max_len: int = 256
    negatives: int = 15
    mine_range: tuple[int, int] = (3, 50)
    depth: int = 100
    bf16: bool = False
    max_train_queries: int | None = None
    max_dev_queries: int | None = None
    max_corpus: int | None = None

    def shrink(self) -> None:
        """The ``--quick`` variant: 256 train and 100 dev queries, 1,500 passages, short texts."""
        self.epochs = min(self.epochs, 1.0)
        self.passage_max_len = 128
        self.negatives = 7
        self.max_train_queries, self.max_dev_queries, self.max_corpus = 256, 100, 1500


@dataclass
class RecipeData:
    """The corpus, the queries and the train/dev qrels every stage works from."""

    corpus: datasets.Dataset
    train_qrels: Qrels
    dev_qrels: Qrels
    train_queries: datasets.Dataset
    dev_queries: datasets.Dataset


class Stopwatch:
    """Seconds spent per stage, for the table."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        logger.info("== %s", name)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start


def _subset_corpus(
    corpus: datasets.Dataset, keep: set[str], size: int, seed: int
) -> datasets.Dataset:
    """Every judged document plus random others up to ``size``."""
    rng = random.Random(seed)
    ids = list(corpus["docid"])
    others = [i for i, d in enumerate(ids) if d not in keep]
    chosen = {i for i, d in enumerate(ids) if d in keep}
    chosen |= set(rng.sample(others, max(0, min(len(others), size - len(chosen)))))
    return corpus.select(sorted(chosen))


def load_data(config: RecipeConfig) -> RecipeData:
    """Read the BEIR folder, carve the dev split, apply the config's size limits."""
    data = Path(config.data_dir)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv"):
        if not (data / name).is_file():
            raise ConfigError(f"{data / name} is missing (expected a BEIR-layout data folder)")
    corpus = load_corpus(data / "corpus.jsonl")
    queries = load_queries(data / "queries.jsonl")
    train_qrels, dev_qrels = split_qrels(
        load_qrels(data / "qrels/train.tsv"), config.dev_size, config.seed
    )
    if config.max_train_queries:
        train_qrels = dict(list(train_qrels.items())[: config.max_train_queries])
    if config.max_dev_queries:
        dev_qrels = dict(list(dev_qrels.items())[: config.max_dev_queries])
    if config.max_corpus:
        judged = {d for qrels in (train_qrels, dev_qrels) for docs in qrels.values() for d in docs}
        corpus = _subset_corpus(corpus, judged, config.max_corpus, config.seed)
    return RecipeData(
        corpus,
        train_qrels,
        dev_qrels,
        keep_judged(queries, train_qrels, str(data / "qrels/train.tsv")),
        keep_judged(queries, dev_qrels, str(data / "qrels/train.tsv")),
    )


def zero_shot(config: RecipeConfig, data: RecipeData, base: str) -> Run:
    """The base model's run over dev and train queries (train rows feed mining)."""
    encoder = DenseEncoder.from_pretrained(
        base, query_max_len=config.query_max_len, passage_max_len=config.passage_max_len
    )
    both = datasets.concatenate_datasets([data.dev_queries, data.train_queries])
    return dense_run(encoder, load_tokenizer(base), data.corpus, both, config.depth, config.bf16)


def mine(config: RecipeConfig, data: RecipeData, run: Run, out: Path) -> tuple[Path, MineReport]:
    """Hard negatives for the train queries from ``run``, written as a training file."""
    train_run = {q: run[q] for q in data.train_qrels if q in run}
    negatives, report = mine_negatives(
        train_run,
        data.train_qrels,
        range_min=config.mine_range[0],
        range_max=config.mine_range[1],
        negative_number=config.negatives,
        seed=config.seed,
    )
    train_file = out / "train.mined.jsonl"
    write_training_file(train_file, negatives, data.train_qrels, data.train_queries, data.corpus)
    logger.info("mining: %s", "; ".join(report.lines()))
    return train_file, report


def fine_tune(config: RecipeConfig, base: str, train_file: Path, model_dir: Path) -> None:
    """Train ``base`` on the mined file with the config's hyper-parameters."""
    model_args = ModelArguments(model_name_or_path=base, temperature=config.temperature)
    data_args = DataArguments(
        dataset_path=str(train_file),
        train_group_size=config.group_size,
        query_max_len=config.query_max_len,
        passage_max_len=config.passage_max_len,
    )
    training_args = RetrievalTrainingArguments(
        output_dir=str(model_dir),
        overwrite_output_dir=True,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        warmup_steps=0.1,
        logging_steps=5,
        save_strategy="no",
        seed=config.seed,
        bf16=config.bf16,
    )
    train(model_args, data_args, training_args)


def tuned_run(config: RecipeConfig, data: RecipeData, model_dir: Path) -> Run:
    """The fine-tuned model's run over the dev queries."""
    tuned = DenseEncoder.from_pretrained(str(model_dir))
    tokenizer = load_tokenizer(str(model_dir))
    return dense_run(tuned, tokenizer, data.corpus, data.dev_queries, config.depth, config.bf16)


def format_results(results: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per system, nDCG@10, MRR@10, Recall@100 and seconds."""
    return format_table(results, [*METRICS, "seconds"], label="system", markdown=True)


def run_scifact(config: RecipeConfig, quick: bool = False) -> dict[str, dict[str, float]]:
    """Run every stage; returns ``{system: {metric: value, "seconds": t}}``."""
    if quick:
        config.shrink()
    out = Path(config.output_dir)
    data = load_data(config)
    out.mkdir(parents=True, exist_ok=True)
    watch, results = Stopwatch(), {}

    def record(system: str, run: Run, seconds: float) -> None:
        write_run(out / "runs" / f"{system}.dev.trec", run, tag=system)
        _, mean = evaluate(run, data.dev_qrels, METRICS)
        results[system] = {**mean, "seconds": seconds}
        logger.info("%s: %s", system, json.dumps(results[system]))

    with watch.stage("bm25"):
        bm25 = bm25_run(data.corpus, data.dev_queries, depth=config.depth)
    record("bm25", bm25, watch.seconds["bm25"])
    base = config.model or bundled_model_path()
    with watch.stage("zero-shot"):
        base_run = zero_shot(config, data, base)
    record("zero-shot", {q: base_run[q] for q in data.dev_qrels}, watch.seconds["zero-shot"])
    with watch.stage("mine"):
        train_file, report = mine(config, data, base_run, out)
    with watch.stage("fine-tune"):
        fine_tune(config, base, train_file, out / "model")
    with watch.stage("fine-tuned search"):
        tuned = tuned_run(config, data, out / "model")
    stages = ("mine", "fine-tune", "fine-tuned search")
    record("fine-tuned", tuned, sum(watch.seconds[s] for s in stages))
    _write_results(out, results, report, config, len(data.dev_qrels))
    return results


def _write_results(
    out: Path, results: dict, report: MineReport, config: RecipeConfig, dev_queries: int
) -> None:
    table = format_results(results)
    with atomic_open(out / "results.md", "w") as handle:
        handle.write(table + "\n")
    resolved = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    with atomic_open(out / "results.json", "w") as handle:
        json.dump(
            {
                "results": results,
                "mining": asdict(report),
                "dev_queries": dev_queries,
                "config": resolved,
            },
            handle,
            indent=2,
        )
    print(table)
