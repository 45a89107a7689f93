"""Trove-style composable training data: qrels + corpus + queries, filtered and transformed.

A ``MaterializedQRelConfig`` names one or more qrel files (qrels, a TREC run, Trove's grouped
jsonl or Tevatron training jsonl, see :mod:`densekit.data.qrel_files`) with their corpora and
queries. Its triplets are filtered (``filter_fn``, else ``[min_score, max_score)``), cut per
query (``group_filter_fn``, else one of ``group_top_k/bottom_k/first_k/random_k``), and their
scores mapped by ``score_transform`` (a number, ``floor``/``ceil``, or a callable of the
triplet dict), in Trove's order. Several configs merge (a later config's score wins for a pair
it shares). ``BinaryDataset`` draws positives from some configs and negatives from others;
``MultiLevelDataset`` keeps graded labels for listwise losses and evaluation.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
from torch.utils.data import Dataset

from densekit.data.formatting import TextFormat
from densekit.data.qrel_files import line_of, read_ids, read_triplets
from densekit.data.readers import TRAIN_FEATURES, load_corpus, load_queries
from densekit.data.train_dataset import Corpus, TrainDataset
from densekit.errors import ConfigError, DataError

Scores = dict[str, dict[str, float]]
Paths = str | os.PathLike | Sequence[str | os.PathLike] | None
_GROUP_KS = ("group_top_k", "group_bottom_k", "group_first_k", "group_random_k")


def _paths(value: Paths) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value]


@dataclass
class MaterializedQRelConfig:
    """One source of (query, passage, score) triplets and the files that give them text."""

    qrel_path: Paths = None
    corpus_path: Paths = None
    query_path: Paths = None
    corpus_cache: Any = None  # Trove keeps these for its own embedding cache; unused here
    query_cache: Any = None
    query_subset_path: Paths = None
    min_score: float | None = None
    max_score: float | None = None
    filter_fn: Callable[[dict[str, Any]], bool] | None = None
    group_top_k: int | None = None
    group_bottom_k: int | None = None
    group_first_k: int | None = None
    group_random_k: int | None = None
    group_filter_fn: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
    score_transform: str | float | Callable[[dict[str, Any]], float] | None = None
    seed: int = field(default=42, repr=False)  # group_random_k draws once, seeded

    def __post_init__(self) -> None:
        if sum(getattr(self, k) is not None for k in _GROUP_KS) > 1:
            raise ConfigError(f"choose one of {', '.join(_GROUP_KS)}")
        if isinstance(self.score_transform, str) and self.score_transform not in ("floor", "ceil"):
            raise ConfigError(f"score_transform {self.score_transform!r}: expected floor or ceil")

    @property
    def qrel_paths(self) -> list[str]:
        return _paths(self.qrel_path)

    def keeps(self, triplet: dict[str, Any]) -> bool:
        """``filter_fn`` if given, else ``min_score`` inclusive, ``max_score`` exclusive."""
        if self.filter_fn is not None:
            return bool(self.filter_fn(triplet))
        score = triplet["score"]
        if self.min_score is not None and score < self.min_score:
            return False
        return not (self.max_score is not None and score >= self.max_score)

    def group(self, triplets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One query's kept triplets cut as Trove's ``group_*`` options say (file order kept)."""
        if self.group_filter_fn is not None:
            return list(self.group_filter_fn(triplets))
        by_score = sorted(triplets, key=lambda t: -t["score"])
        if self.group_top_k is not None:
            return by_score[: self.group_top_k]
        if self.group_bottom_k is not None:
            return by_score[::-1][: self.group_bottom_k]
        if self.group_first_k is not None:
            return triplets[: self.group_first_k]
        if self.group_random_k is not None and len(triplets) > self.group_random_k:
            rng = random.Random(f"{self.seed}:{triplets[0]['qid']}")
            return rng.sample(triplets, self.group_random_k)
        return triplets

    def transform(self, triplet: dict[str, Any]) -> float:
        rule = self.score_transform
        if rule is None:
            return float(triplet["score"])
        if callable(rule):
            return float(rule(triplet))
        if rule == "floor":
            return float(int(triplet["score"]))
        if rule == "ceil":
            return float(math.ceil(triplet["score"]))
        return float(rule)


class _Texts:
    """Corpora and query sets of several configs, each file read once."""

    def __init__(self) -> None:
        self.corpora: dict[str, Corpus] = {}
        self.queries: dict[str, dict[str, str]] = {}

    def corpus(self, path: str) -> Corpus:
        if path not in self.corpora:
            self.corpora[path] = Corpus(load_corpus(path), source=path)
        return self.corpora[path]

    def query_texts(self, path: str) -> dict[str, str]:
        if path not in self.queries:
            table = load_queries(path)
            self.queries[path] = dict(zip(table["query_id"], table["text"], strict=True))
        return self.queries[path]


def _config_triplets(config: MaterializedQRelConfig) -> list[tuple[str, dict[str, Any]]]:
    """(qrel file, triplet dict) kept by ``config``, grouped per query, in file order."""
    subset = set().union(*(read_ids(p) for p in _paths(config.query_subset_path)))
    per_query: dict[str, list[dict[str, Any]]] = {}
    for path in config.qrel_paths:
        for t in read_triplets(path):
            triplet = {"qid": t.qid, "docid": t.docid, "score": t.score, "path": path, "line": t.line}  # fmt: skip
            if (not subset or t.qid in subset) and config.keeps(triplet):
                per_query.setdefault(t.qid, []).append(triplet)
    return [(t["path"], t) for group in per_query.values() for t in config.group(group)]


def materialize(
    configs: Sequence[MaterializedQRelConfig], texts: _Texts | None = None
) -> tuple[Scores, dict[str, str], dict[str, str]]:
    """Merge configs into (scores, query text per id, corpus path per docid), validating ids."""
    texts = texts or _Texts()
    merged: Scores = {}
    query_text: dict[str, str] = {}
    doc_source: dict[str, str] = {}
    for config in configs:
        if not config.qrel_paths or not _paths(config.corpus_path) or not _paths(config.query_path):
            raise ConfigError(
                "a MaterializedQRelConfig needs qrel_path, corpus_path and query_path"
            )
        corpora = [(p, texts.corpus(p)) for p in _paths(config.corpus_path)]
        queries = {k: v for p in _paths(config.query_path) for k, v in texts.query_texts(p).items()}
        for path, t in _config_triplets(config):
            qid, docid = t["qid"], t["docid"]
            if qid not in queries:
                line = t["line"] or line_of(path, qid)
                raise DataError(path, f"query id {qid!r} is not in {config.query_path}", line)
            source = next((p for p, corpus in corpora if docid in corpus), None)
            if source is None:
                line = t["line"] or line_of(path, qid, docid)
                raise DataError(path, f"document id {docid!r} is not in {config.corpus_path}", line)
            merged.setdefault(qid, {})[docid] = config.transform(t)
            query_text[qid] = queries[qid]
            doc_source[docid] = source
    return merged, query_text, doc_source


def _merged_corpus(texts: _Texts, paths: set[str]) -> Corpus:
    tables = [texts.corpus(p).table for p in sorted(paths)]
    table = tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)
    return Corpus(table, source=", ".join(sorted(paths)))


def _id_passages(docids: list[str]) -> list[dict[str, Any]]:
    return [{"docid": d, "title": None, "text": None} for d in docids]


def _overridden(data_args: Any, overrides: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    """Trove's ``data_args_overrides``: ``group_size`` and other DataArguments fields."""
    overrides = dict(overrides or {})
    size = int(overrides.pop("group_size", data_args.train_group_size))
    for name in overrides:
        if not hasattr(data_args, name):
            raise ConfigError(f"data_args_overrides: {name!r} is not a DataArguments field")
    return size, overrides


class BinaryDataset(TrainDataset):
    """Positives from ``positive_configs``, negatives from ``negative_configs`` (Trove).

    A query needs at least one positive; passages that are positives are never negatives.
    ``format_query(text=, dataset=)`` / ``format_passage(text=, title=, dataset=)`` (Trove's
    calls, e.g. ``model.format_query``) override the prefixes; ``dataset`` is
    ``data_args.dataset_name``. ``num_proc`` is accepted for Trove's signature (files are read
    in one pass here).
    """

    def __init__(
        self,
        data_args: Any,
        positive_configs: MaterializedQRelConfig | Sequence[MaterializedQRelConfig],
        negative_configs: MaterializedQRelConfig | Sequence[MaterializedQRelConfig] | None = None,
        format_query: Callable[..., str] | None = None,
        format_passage: Callable[..., str] | None = None,
        seed: int = 42,
        text_format: TextFormat | None = None,
        data_args_overrides: dict[str, Any] | None = None,
        num_proc: int | None = None,
    ) -> None:
        group_size, _ = _overridden(data_args, data_args_overrides)
        texts = _Texts()
        positive, query_text, _ = materialize(_as_list(positive_configs), texts)
        negative, _, _ = materialize(_as_list(negative_configs), texts)
        rows = []
        for qid, docs in positive.items():
            pos = sorted(d for d, s in docs.items() if s > 0)
            if not pos:
                continue
            neg = sorted(d for d in negative.get(qid, {}) if d not in docs)
            rows.append(
                {
                    "query_id": qid,
                    "query": query_text[qid],
                    "prompt": "",
                    "pos": _id_passages(pos),
                    "neg": _id_passages(neg),
                    "pos_scores": [],
                    "neg_scores": [],
                    "pos_grades": [],
                }
            )
        if not rows:
            raise DataError(positive_configs_path(positive_configs), "no query has a positive")
        records = datasets.Dataset.from_list(rows, features=TRAIN_FEATURES)
        self.dataset_name = getattr(data_args, "dataset_name", None)
        self.format_query_fn = format_query
        self.format_passage_fn = format_passage
        paths = {p for c in _as_list(positive_configs) + _as_list(negative_configs) for p in _paths(c.corpus_path)}  # fmt: skip
        super().__init__(
            records,
            group_size=group_size,
            corpus=_merged_corpus(texts, paths),
            text_format=text_format or _data_args_format(data_args),
            seed=seed,
        )

    def _text(self, passage: dict[str, Any]) -> str:
        if self.format_passage_fn is None:
            return super()._text(passage)
        full = self.corpus.get(passage["docid"])
        return self.format_passage_fn(
            text=full["text"], title=full["title"] or None, dataset=self.dataset_name
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        if self.format_query_fn is not None:
            query = self.records[index]["query"]
            item["query"] = self.format_query_fn(text=query, dataset=self.dataset_name)
        return item


class MultiLevelDataset(Dataset):
    """Groups of ``group_size`` passages with graded labels, for listwise losses (Trove).

    ``passage_selection_strategy`` (``data_args`` or ``data_args_overrides``):
    ``most_relevant`` keeps the highest-labelled passages, ``least_relevant`` the lowest,
    ``random`` a seeded random subset per epoch; short groups are padded with random corpus
    passages labelled 0. ``qrels``, ``queries`` and ``corpus`` serve the evaluator.
    """

    def __init__(
        self,
        data_args: Any,
        qrel_config: MaterializedQRelConfig | Sequence[MaterializedQRelConfig],
        data_args_overrides: dict[str, Any] | None = None,
        seed: int = 42,
        text_format: TextFormat | None = None,
        format_query: Callable[..., str] | None = None,
        format_passage: Callable[..., str] | None = None,
        num_proc: int | None = None,
    ) -> None:
        self.group_size, overrides = _overridden(data_args, data_args_overrides)
        default = getattr(data_args, "passage_selection_strategy", None) or "most_relevant"
        self.strategy = overrides.get("passage_selection_strategy", default)
        if self.strategy not in ("most_relevant", "least_relevant", "random"):
            raise ConfigError(f"unknown passage_selection_strategy {self.strategy!r}")
        self.text_format = text_format or _data_args_format(data_args)
        self.dataset_name = getattr(data_args, "dataset_name", None)
        self.format_query_fn, self.format_passage_fn = format_query, format_passage
        texts = _Texts()
        configs = _as_list(qrel_config)
        self.scores, self.query_text, _ = materialize(configs, texts)
        self.qids = sorted(self.scores)
        self.corpus = _merged_corpus(texts, {p for c in configs for p in _paths(c.corpus_path)})
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.qids)

    def _choose(self, qid: str, rng: random.Random) -> list[tuple[str, float]]:
        docs = sorted(self.scores[qid].items(), key=lambda item: (-item[1], item[0]))
        if self.strategy == "least_relevant":
            docs = docs[::-1]
        elif self.strategy == "random":
            docs = rng.sample(docs, min(len(docs), self.group_size))
            docs.sort(key=lambda item: (-item[1], item[0]))
        return docs[: self.group_size]

    def __getitem__(self, index: int) -> dict[str, Any]:
        qid = self.qids[index]
        rng = random.Random(hash((self.seed, self.epoch, index)))
        chosen = self._choose(qid, rng)
        passages = [self.corpus.get(d) for d, _ in chosen]
        labels = [s for _, s in chosen]
        while len(passages) < self.group_size:
            passages.append(self.corpus.table[rng.randrange(len(self.corpus))])
            labels.append(0.0)
        return {
            "query": self.format_query(self.query_text[qid]),
            "passages": [self.format_passage(p["text"], p["title"]) for p in passages],
            "labels": labels,
        }

    def format_query(self, text: str) -> str:
        if self.format_query_fn is None:
            return self.text_format.format_query(text)
        return self.format_query_fn(text=text, dataset=self.dataset_name)

    def format_passage(self, text: str, title: str | None) -> str:
        if self.format_passage_fn is None:
            return self.text_format.format_passage(text, title)
        return self.format_passage_fn(text=text, title=title or None, dataset=self.dataset_name)


def _data_args_format(data_args: Any) -> TextFormat:
    """The text format named by ``DataArguments`` (used when no encoder config is given)."""
    separator = getattr(data_args, "passage_field_separator", None)
    return TextFormat(
        query_prefix=getattr(data_args, "query_prefix", None) or "",
        passage_prefix=getattr(data_args, "passage_prefix", None) or "",
        passage_field_separator=" " if separator is None else separator,
    )


def _as_list(configs) -> list[MaterializedQRelConfig]:
    if configs is None:
        return []
    return [configs] if isinstance(configs, MaterializedQRelConfig) else list(configs)


def positive_configs_path(configs) -> str:
    return ", ".join(p for c in _as_list(configs) for p in c.qrel_paths) or "positive_configs"


__all__ = ["BinaryDataset", "MaterializedQRelConfig", "MultiLevelDataset", "materialize"]
