"""Ranking metrics with trec_eval's semantics, so numbers compare with published ones.

What trec_eval does, and this module copies:

* documents are ranked by score descending, ties broken by docid descending
  (byte-wise, like ``strcmp``), whatever order the run lists them in;
* every query in the qrels is evaluated (trec_eval ``-c``): one without results
  scores 0, one whose judgments are all non-relevant scores 0 on the binary
  metrics; queries of the run that are not in the qrels are ignored;
* nDCG gains are the graded relevance values (rel <= 0 gains nothing), discounted
  by log2(rank + 1), normalised by the ideal ranking of all judged documents;
* binary metrics count rel >= relevance_threshold as relevant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from densekit.errors import ConfigError, DensekitError

KINDS = ("ndcg", "mrr", "recall", "map", "p", "success")


def parse_metrics(spec: str | Iterable[str]) -> list[str]:
    """Normalise ``"ndcg@10,recall@100"`` (or a list of names) to checked metric names."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    parsed: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        _split(name)
        if name not in parsed:
            parsed.append(name)
    if not parsed:
        raise DensekitError("no metric given")
    return parsed


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Iterable[str],
    relevance_threshold: int = 1,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Return (per-query values, mean values) for ``metrics`` such as ``ndcg@10``.

    Queries are those of ``qrels`` that have at least one judgment (pytrec_eval drops
    empty ones); the mean is over all of them, missing results counting as 0.
    """
    if relevance_threshold < 1:
        raise ConfigError(f"relevance_threshold must be at least 1, got {relevance_threshold}")
    names = parse_metrics(metrics)
    specs = [(name, *_split(name)) for name in names]
    depth = max(k for _, _, k in specs)
    discount = 1.0 / np.log2(np.arange(2, depth + 2, dtype=np.float64))
    ranks = np.arange(1, depth + 1, dtype=np.float64)

    per_query: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        if not judged:
            continue
        scores = run.get(qid, {})
        top = sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)[:depth]
        rels = np.array([judged.get(docid, 0) for docid, _ in top], dtype=np.int64)
        gains = np.maximum(rels, 0).astype(np.float64)
        hits = rels >= relevance_threshold
        all_rels = np.fromiter(judged.values(), dtype=np.int64, count=len(judged))
        num_rel = int(np.count_nonzero(all_rels >= relevance_threshold))
        ideal = np.sort(np.maximum(all_rels, 0))[::-1][:depth].astype(np.float64)

        values: dict[str, float] = {}
        for name, kind, k in specs:
            hit_k = hits[:k]
            found = int(np.count_nonzero(hit_k))
            if kind == "ndcg":
                ideal_dcg = float(ideal[:k] @ discount[: len(ideal[:k])])
                dcg = float(gains[:k] @ discount[: len(gains[:k])])
                value = dcg / ideal_dcg if ideal_dcg > 0 else 0.0
            elif kind == "mrr":
                value = 1.0 / (int(np.argmax(hit_k)) + 1) if found else 0.0
            elif kind == "recall":
                value = found / num_rel if num_rel else 0.0
            elif kind == "map":
                precision = np.cumsum(hit_k) / ranks[: len(hit_k)]
                value = float(precision[hit_k].sum()) / num_rel if num_rel else 0.0
            elif kind == "p":
                value = found / k
            else:
                value = 1.0 if found else 0.0
            values[name] = value
        per_query[qid] = values

    mean = {
        name: float(np.mean([values[name] for values in per_query.values()])) if per_query else 0.0
        for name in names
    }
    return per_query, mean


def format_table(
    rows: Mapping[str, Mapping[str, float]],
    columns: Sequence[str],
    label: str = "system",
    markdown: bool = False,
) -> str:
    """One table for every command: a row per key of ``rows``, a column per name in ``columns``.

    Values print with 4 decimals (``seconds`` with none); ``markdown`` gives a Markdown table,
    otherwise aligned plain text.
    """

    def cell(column: str, value: float) -> str:
        return f"{value:.0f}" if column == "seconds" else f"{value:.4f}"

    body = [[name, *(cell(c, values[c]) for c in columns)] for name, values in rows.items()]
    header = [label, *columns]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    fmt = [f"{{:<{widths[0]}}}", *(f"{{:>{w}}}" for w in widths[1:])]
    lines = [header, ["-" * w for w in widths], *body]
    return "\n".join(
        "  ".join(f.format(v) for f, v in zip(fmt, line, strict=True)) for line in lines
    )


def _split(name: str) -> tuple[str, int]:
    kind, at, cutoff = name.partition("@")
    if (
        kind not in KINDS
        or not at
        or not (cutoff.isascii() and cutoff.isdigit())
        or int(cutoff) < 1
    ):
        raise DensekitError(
            f"unknown metric {name!r}; expected NAME@K with NAME one of {', '.join(KINDS)} "
            f"and K a positive integer"
        )
    return kind, int(cutoff)
