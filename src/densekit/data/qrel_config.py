"""Trove-style composable training data: qrels + corpus + queries, filtered and transformed.

A ``MaterializedQRelConfig`` names a qrels file (or a TREC run used as one) with its corpus and
queries, keeps the pairs whose score lies in ``[min_score, max_score)`` and maps kept scores
through ``score_transform``. Several configs merge (a later config's score wins for a pair it
shares). ``BinaryDataset`` draws positives from some configs and negatives from others;
``MultiLevelDataset`` keeps graded labels for listwise losses.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
from torch.utils.data import Dataset

from densekit.data.formatting import TextFormat
from densekit.data.qrels import load_qrels
from densekit.data.readers import TRAIN_FEATURES, load_corpus, load_queries
from densekit.data.runs import read_run
from densekit.data.text_files import text_lines
from densekit.data.train_dataset import Corpus, TrainDataset
from densekit.errors import DataError

Scores = dict[str, dict[str, float]]


@dataclass
class MaterializedQRelConfig:
    """One source of (query, passage, score) triples and the files that give them text."""

    qrel_path: str
    corpus_path: str
    query_path: str
    min_score: float | None = None
    max_score: float | None = None
    score_transform: float | Callable[[float], float] | None = None

    def keeps(self, score: float) -> bool:
        """``min_score`` is inclusive, ``max_score`` exclusive (as in Trove)."""
        if self.min_score is not None and score < self.min_score:
            return False
        return not (self.max_score is not None and score >= self.max_score)

    def transform(self, score: float) -> float:
        if self.score_transform is None:
            return score
        if callable(self.score_transform):
            return float(self.score_transform(score))
        return float(self.score_transform)


def _read_scores(path: str) -> Scores:
    """Qrels (BEIR tsv or TREC) or a TREC run (6 columns) as ``{qid: {docid: score}}``."""
    first = next((line for _, line in text_lines(path) if line.strip()), "")
    if len(first.split()) == 6:
        return read_run(path)
    return {q: {d: float(s) for d, s in docs.items()} for q, docs in load_qrels(path).items()}


def _line_of(path: str, *tokens: str) -> int | None:
    """First line of ``path`` holding all ``tokens`` as fields (for error messages only)."""
    for number, line in text_lines(path):
        fields = set(line.split())
        if all(t in fields for t in tokens):
            return number
    return None


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


def materialize(
    configs: Sequence[MaterializedQRelConfig], texts: _Texts | None = None
) -> tuple[Scores, dict[str, str], dict[str, str]]:
    """Merge configs into (scores, query text per id, corpus path per docid), validating ids."""
    texts = texts or _Texts()
    merged: Scores = {}
    query_text: dict[str, str] = {}
    doc_source: dict[str, str] = {}
    for config in configs:
        corpus = texts.corpus(config.corpus_path)
        queries = texts.query_texts(config.query_path)
        for qid, docs in _read_scores(config.qrel_path).items():
            for docid, score in docs.items():
                if not config.keeps(score):
                    continue
                if qid not in queries:
                    raise DataError(
                        config.qrel_path,
                        f"query id {qid!r} is not in {config.query_path}",
                        _line_of(config.qrel_path, qid),
                    )
                if docid not in corpus:
                    raise DataError(
                        config.qrel_path,
                        f"document id {docid!r} is not in {config.corpus_path}",
                        _line_of(config.qrel_path, qid, docid),
                    )
                merged.setdefault(qid, {})[docid] = config.transform(score)
                query_text[qid] = queries[qid]
                doc_source[docid] = config.corpus_path
    return merged, query_text, doc_source


def _merged_corpus(texts: _Texts, paths: set[str]) -> Corpus:
    tables = [texts.corpus(p).table for p in sorted(paths)]
    table = tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)
    return Corpus(table, source=", ".join(sorted(paths)))


def _id_passages(docids: list[str]) -> list[dict[str, Any]]:
    return [{"docid": d, "title": None, "text": None} for d in docids]


class BinaryDataset(TrainDataset):
    """Positives from ``positive_configs``, negatives from ``negative_configs`` (Trove).

    A query needs at least one positive; passages that are positives are never negatives.
    ``format_query(text, qid)`` / ``format_passage(text, title, docid)`` override the prefixes.
    """

    def __init__(
        self,
        data_args: Any,
        positive_configs: MaterializedQRelConfig | Sequence[MaterializedQRelConfig],
        negative_configs: MaterializedQRelConfig | Sequence[MaterializedQRelConfig] | None = None,
        format_query: Callable[[str, str], str] | None = None,
        format_passage: Callable[[str, str, str], str] | None = None,
        seed: int = 42,
        text_format: TextFormat | None = None,
    ) -> None:
        texts = _Texts()
        positive, query_text, sources = materialize(_as_list(positive_configs), texts)
        negative, _, neg_sources = materialize(_as_list(negative_configs), texts)
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
                }
            )
        if not rows:
            raise DataError(positive_configs_path(positive_configs), "no query has a positive")
        records = datasets.Dataset.from_list(rows, features=TRAIN_FEATURES)
        self.format_query_fn = format_query
        self.format_passage_fn = format_passage
        super().__init__(
            records,
            group_size=data_args.train_group_size,
            corpus=_merged_corpus(texts, set(sources.values()) | set(neg_sources.values())),
            text_format=text_format or _data_args_format(data_args),
            seed=seed,
        )

    def _text(self, passage: dict[str, Any]) -> str:
        if self.format_passage_fn is None:
            return super()._text(passage)
        full = self.corpus.get(passage["docid"])
        return self.format_passage_fn(full["text"], full["title"], full["docid"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        if self.format_query_fn is not None:
            row = self.records[index]
            item["query"] = self.format_query_fn(row["query"], row["query_id"])
        return item


class MultiLevelDataset(Dataset):
    """Groups of ``group_size`` passages with graded labels, for listwise losses (Trove).

    ``passage_selection_strategy``: ``most_relevant`` keeps the highest-labelled passages,
    ``random`` a seeded random subset per epoch; short groups are padded with random corpus
    passages labelled 0.
    """

    def __init__(
        self,
        data_args: Any,
        qrel_config: MaterializedQRelConfig | Sequence[MaterializedQRelConfig],
        data_args_overrides: dict[str, Any] | None = None,
        seed: int = 42,
        text_format: TextFormat | None = None,
    ) -> None:
        overrides = data_args_overrides or {}
        self.group_size = int(overrides.get("group_size", data_args.train_group_size))
        self.strategy = overrides.get("passage_selection_strategy", "most_relevant")
        if self.strategy not in ("most_relevant", "random"):
            raise DataError("data_args_overrides", f"unknown strategy {self.strategy!r}")
        self.text_format = text_format or _data_args_format(data_args)
        texts = _Texts()
        self.scores, self.query_text, sources = materialize(_as_list(qrel_config), texts)
        self.qids = sorted(self.scores)
        self.corpus = _merged_corpus(texts, set(sources.values()))
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.qids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        qid = self.qids[index]
        rng = random.Random(hash((self.seed, self.epoch, index)))
        docs = sorted(self.scores[qid].items(), key=lambda item: (-item[1], item[0]))
        if self.strategy == "random":
            docs = rng.sample(docs, min(len(docs), self.group_size))
            docs.sort(key=lambda item: (-item[1], item[0]))
        chosen = docs[: self.group_size]
        passages = [self.corpus.get(d) for d, _ in chosen]
        labels = [s for _, s in chosen]
        while len(passages) < self.group_size:
            passages.append(self.corpus.table[rng.randrange(len(self.corpus))])
            labels.append(0.0)
        return {
            "query": self.text_format.format_query(self.query_text[qid]),
            "passages": [self.text_format.format_passage(p["text"], p["title"]) for p in passages],
            "labels": labels,
        }


def _data_args_format(data_args: Any) -> TextFormat:
    """The text format named by ``DataArguments`` (used when no encoder config is given)."""
    return TextFormat(
        query_prefix=data_args.query_prefix or "",
        passage_prefix=data_args.passage_prefix or "",
        passage_field_separator=" "
        if data_args.passage_field_separator is None
        else data_args.passage_field_separator,
    )


def _as_list(configs) -> list[MaterializedQRelConfig]:
    if configs is None:
        return []
    return [configs] if isinstance(configs, MaterializedQRelConfig) else list(configs)


def positive_configs_path(configs) -> str:
    return ", ".join(c.qrel_path for c in _as_list(configs)) or "positive_configs"


__all__ = ["BinaryDataset", "MaterializedQRelConfig", "MultiLevelDataset", "materialize"]
