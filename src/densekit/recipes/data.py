"""A BEIR-layout folder as the recipe sees it: corpus, queries, train/dev qrels, and test qrels
kept aside until the very end.

``qrels/dev.tsv`` is used when present (its queries are always left out of training, even when
``train.tsv`` also lists them); otherwise a dev split is carved from the training queries by a
fixed seed. ``qrels/test.tsv`` is only located here, never read: the recipe
evaluates it once, after every choice has been made on dev.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import datasets

from densekit.data.qrels import keep_judged, load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.errors import ConfigError, DataError
from densekit.recipes.config import RecipeConfig

logger = logging.getLogger(__name__)
Qrels = dict[str, dict[str, int]]
REQUIRED = ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv")


def split_qrels(qrels: Qrels, dev_size: int, seed: int) -> tuple[Qrels, Qrels]:
    """(train, dev) qrels: ``dev_size`` queries drawn by ``random.Random(seed)`` from sorted ids."""
    ids = sorted(qrels, key=lambda q: (len(q), q))
    dev = set(random.Random(seed).sample(ids, dev_size))
    return (
        {q: qrels[q] for q in ids if q not in dev},
        {q: qrels[q] for q in ids if q in dev},
    )


@dataclass
class RecipeData:
    """What every stage works from; ``test_qrels_path`` is None when the folder has no test."""

    corpus: datasets.Dataset
    queries: datasets.Dataset
    train_qrels: Qrels
    dev_qrels: Qrels
    test_qrels_path: Path | None

    def queries_of(self, qrels: Qrels) -> datasets.Dataset:
        return keep_judged(self.queries, qrels, "qrels")


def _check_ids(qrels: Qrels, path: Path, query_ids: set[str], doc_ids: set[str]) -> None:
    for qid, docs in qrels.items():
        if qid not in query_ids:
            raise DataError(str(path), f"query id {qid!r} is not in queries.jsonl")
        missing = next((d for d in docs if d not in doc_ids), None)
        if missing is not None:
            raise DataError(str(path), f"document id {missing!r} is not in corpus.jsonl")


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


def _train_and_dev(folder: Path, config: RecipeConfig, ids: tuple[set, set]) -> tuple[Qrels, Qrels]:
    train = load_qrels(folder / "qrels/train.tsv")
    _check_ids(train, folder / "qrels/train.tsv", *ids)
    if (folder / "qrels/dev.tsv").is_file():
        dev = load_qrels(folder / "qrels/dev.tsv")
        _check_ids(dev, folder / "qrels/dev.tsv", *ids)
        overlap = set(train) & set(dev)
        if overlap:  # e.g. a dev split carved out of train.tsv and saved beside it
            logger.info("%d dev queries are also in train.tsv: left out of training", len(overlap))
        left = {q: docs for q, docs in train.items() if q not in dev}
        if not left:
            raise DataError(
                str(folder / "qrels/dev.tsv"),
                "every query of qrels/train.tsv is also a dev query: none is left to train on",
            )
        return left, dev
    size = min(config.dev_size, len(train) // 4)
    if size < 1:
        raise DataError(str(folder / "qrels/train.tsv"), "too few queries to carve a dev split")
    return split_qrels(train, size, config.seed)


def load_data(config: RecipeConfig) -> RecipeData:
    """Read and check the folder, carve dev if needed, apply the config's size limits."""
    folder = Path(config.data_dir)
    for name in REQUIRED:
        if not (folder / name).is_file():
            raise ConfigError(f"{folder / name} is missing (expected a BEIR-layout data folder)")
    corpus = load_corpus(folder / "corpus.jsonl")
    queries = load_queries(folder / "queries.jsonl")
    ids = (set(queries["query_id"]), set(corpus["docid"]))
    train, dev = _train_and_dev(folder, config, ids)
    if config.max_train_queries:
        train = dict(list(train.items())[: config.max_train_queries])
    if config.max_dev_queries:
        dev = dict(list(dev.items())[: config.max_dev_queries])
    test = folder / "qrels/test.tsv"
    if config.max_corpus:
        judged = {d for qrels in (train, dev) for docs in qrels.values() for d in docs}
        corpus = _subset_corpus(corpus, judged, config.max_corpus, config.seed)
    return RecipeData(corpus, queries, train, dev, test if test.is_file() else None)
