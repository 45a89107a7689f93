"""Hard-negative mining from a run: turn retrieval results and qrels into training data.

Negatives come from a rank window of the run, minus the judged positives, minus (optionally)
candidates scoring too close to the positive: NV-Retriever's TopK-PercPos filter, which drops
likely unjudged positives (false negatives) that would otherwise teach the model the wrong thing.
Output is Tevatron's layout or FlagEmbedding's ``{query, pos, neg}``; FlagEmbedding's own miner
(``hn_mine.py``: texts in, texts out, other keys kept) is :func:`mine_flag_rows`.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from densekit.encoders.interface import TextEncoder

from densekit.atomic import atomic_open
from densekit.data.runs import ranked
from densekit.data.text_files import iter_jsonl
from densekit.errors import ConfigError, DataError

SAMPLES = ("top", "random")
OUTPUT_FORMATS = ("tevatron", "flagembedding")
_WRITE_CHUNK = 1024


@dataclass
class MineReport:
    """What mining dropped and why, to judge whether the window and threshold fit the data."""

    queries: int = 0
    candidates_considered: int = 0
    removed_as_positive: int = 0
    removed_by_perc_pos: int = 0
    queries_without_scored_positive: int = 0
    queries_missing_from_run: int = 0
    queries_short_of_negatives: int = 0

    def lines(self) -> list[str]:
        """One ``name: value`` line per counter, for the terminal."""
        return [f"{name}: {value}" for name, value in asdict(self).items()]


def _positives(judged: Mapping[str, int]) -> list[str]:
    return sorted(docid for docid, rel in judged.items() if rel > 0)


def mine_negatives(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    range_min: int = 0,
    range_max: int = 100,
    negative_number: int = 30,
    perc_pos: float | None = 0.95,
    seed: int = 42,
    sample: str = "top",
    shift_by_positives: bool = False,
) -> tuple[dict[str, list[str]], MineReport]:
    """Negatives for every qrels query with a positive, in run rank order.

    Candidates are the run's documents at 0-based ranks ``[range_min, range_max)`` (score
    descending, ties by docid). With ``shift_by_positives`` a query with k judged positives has
    its window start at rank ``max(range_min, k)`` (same width): a query with dozens of judged
    documents likely has unjudged relevant ones near the top too, which would be false
    negatives; queries with few positives keep the window as given. With ``perc_pos`` a candidate scoring above ``perc_pos`` times
    the best-scored positive is dropped; a query whose positives are all missing from the run
    keeps its candidates. ``sample="random"`` draws with a per-query seed, so a query's
    negatives do not change when other queries are added or removed.
    """
    if not 0 <= range_min < range_max:
        raise ConfigError(f"need 0 <= range_min < range_max, got {range_min} and {range_max}")
    if negative_number < 1:
        raise ConfigError(f"negative_number must be positive, got {negative_number}")
    if sample not in SAMPLES:
        raise ConfigError(f"unknown sample {sample!r}; expected one of {', '.join(SAMPLES)}")
    if perc_pos is not None and perc_pos <= 0:
        raise ConfigError(f"perc_pos must be positive (or None to disable), got {perc_pos}")
    report = MineReport()
    negatives: dict[str, list[str]] = {}
    for qid, judged in qrels.items():
        positives = set(_positives(judged))
        if not positives:
            continue
        report.queries += 1
        scored = run.get(qid, {})
        if not scored:
            report.queries_missing_from_run += 1
        start = max(range_min, len(positives)) if shift_by_positives else range_min
        window = ranked(scored)[start : start + range_max - range_min]
        report.candidates_considered += len(window)
        candidates = [hit for hit in window if hit[0] not in positives]
        report.removed_as_positive += len(window) - len(candidates)
        positive_scores = [scored[docid] for docid in positives if docid in scored]
        if not positive_scores:
            report.queries_without_scored_positive += 1
        elif perc_pos is not None:
            threshold = perc_pos * max(positive_scores)
            kept = [hit for hit in candidates if hit[1] <= threshold]
            report.removed_by_perc_pos += len(candidates) - len(kept)
            candidates = kept
        if sample == "random" and len(candidates) > negative_number:
            picked = random.Random(f"{seed}:{qid}").sample(range(len(candidates)), negative_number)
            candidates = [candidates[i] for i in sorted(picked)]
        chosen = [docid for docid, _ in candidates[:negative_number]]
        if len(chosen) < negative_number:
            report.queries_short_of_negatives += 1
        negatives[qid] = chosen
    return negatives, report


def _unknown(ids: list[str], known: Mapping[str, object]) -> list[str]:
    return sorted({i for i in ids if i not in known})


def _describe(missing: list[str], where: str) -> str:
    shown = ", ".join(repr(i) for i in missing[:3])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return f"{len(missing)} ids not found in {where}: {shown}{more}"


def write_training_file(
    output: str | os.PathLike,
    negatives: Mapping[str, list[str]],
    qrels: Mapping[str, Mapping[str, int]],
    queries: datasets.Dataset,
    corpus: datasets.Dataset,
    sources: tuple[str, str, str, str] = ("qrels", "run", "corpus", "queries"),
    fmt: str = "tevatron",
) -> None:
    """Write mined negatives as Tevatron-v1 jsonl, or FlagEmbedding's ``{query, pos, neg}``
    (passages as ``title text`` strings) with ``fmt="flagembedding"``. A query whose positives
    have different qrels grades also gets ``pos_grades`` (densekit's field; other tools ignore
    it), so training can draw its most relevant positives most often.

    ``sources`` names the qrels, run, corpus and queries files in error messages.
    """
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; expected {', '.join(OUTPUT_FORMATS)}")
    qrels_name, run_name, corpus_name, queries_name = sources
    query_text = dict(zip(queries["query_id"], queries["text"], strict=True))
    missing = _unknown(list(negatives), query_text)
    if missing:
        raise DataError(qrels_name, _describe(missing, f"queries {queries_name}"))
    positives = {qid: _positives(qrels[qid]) for qid in negatives}
    row_of = {docid: row for row, docid in enumerate(corpus["docid"])}
    missing = _unknown([d for docs in positives.values() for d in docs], row_of)
    if missing:
        raise DataError(qrels_name, _describe(missing, f"corpus {corpus_name}"))
    missing = _unknown([d for docs in negatives.values() for d in docs], row_of)
    if missing:
        raise DataError(run_name, _describe(missing, f"corpus {corpus_name}"))

    qids = list(negatives)
    with atomic_open(output, "w", encoding="utf-8") as handle:
        for start in tqdm(range(0, len(qids), _WRITE_CHUNK), desc="Writing", unit="chunk"):
            chunk = qids[start : start + _WRITE_CHUNK]
            rows = sorted({row_of[d] for q in chunk for d in positives[q] + negatives[q]})
            fetched = corpus[rows]
            passage = {
                docid: {"docid": docid, "title": title, "text": text}
                for docid, title, text in zip(
                    fetched["docid"], fetched["title"], fetched["text"], strict=True
                )
            }
            for qid in chunk:
                record = {
                    "query_id": qid,
                    "query": query_text[qid],
                    "positive_passages": [passage[d] for d in positives[qid]],
                    "negative_passages": [passage[d] for d in negatives[qid]],
                }
                if fmt == "flagembedding":
                    record = {
                        "query": query_text[qid],
                        "pos": [_flat(p) for p in record["positive_passages"]],
                        "neg": [_flat(p) for p in record["negative_passages"]],
                    }
                grades = [qrels[qid][d] for d in positives[qid]]
                if len(set(grades)) > 1:  # binary judgments: nothing to weigh
                    record["pos_grades"] = grades
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _flat(passage: dict[str, str]) -> str:
    return f"{passage['title']} {passage['text']}".strip() if passage["title"] else passage["text"]


def parse_range(spec: str) -> tuple[int, int]:
    """FlagEmbedding's ``--range_for_sampling 10-210``: 0-based ranks ``[10, 210)``."""
    start, _, end = spec.partition("-")
    try:
        window = int(start), int(end)
    except ValueError:
        raise ConfigError(
            f"--range_for_sampling {spec!r}: expected START-END, e.g. 10-210"
        ) from None
    if not 0 <= window[0] < window[1]:
        raise ConfigError(f"--range_for_sampling {spec!r}: need 0 <= START < END")
    return window


def read_flag_rows(path: str | os.PathLike) -> list[dict]:
    """FlagEmbedding training rows (``query``, ``pos`` and optional ``neg`` strings), checked."""
    rows = []
    for line, row in iter_jsonl(Path(path)):
        query, pos, neg = row.get("query"), row.get("pos"), row.get("neg", [])
        if not isinstance(query, str) or not query.strip():
            raise DataError(str(path), "missing or empty query", line)
        for name, texts in (("pos", pos), ("neg", neg)):
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise DataError(str(path), f"{name} must be a list of strings", line)
        if not pos:
            raise DataError(str(path), "empty pos list", line)
        rows.append(row)
    if not rows:
        raise DataError(str(path), "holds no records (empty)")
    return rows


def read_pool(path: str | os.PathLike) -> list[str]:
    """A candidate pool: one ``{"text": ...}`` per line, duplicates kept once."""
    texts = []
    for line, row in iter_jsonl(Path(path)):
        if not isinstance(row.get("text"), str) or not row["text"].strip():
            raise DataError(str(path), "expected a non-empty text field", line)
        texts.append(row["text"])
    if not texts:
        raise DataError(str(path), "holds no records (empty)")
    return list(dict.fromkeys(texts))


def flag_search(
    encoder: TextEncoder, rows: list[dict], pool: list[str], depth: int
) -> dict[str, dict[str, float]]:
    """Exact search of every row's query over ``pool``: run ``{row index: {pool index: score}}``."""
    from densekit.retrieval.dense import dense_run  # torch and faiss only when mining encodes

    corpus = datasets.Dataset.from_dict(
        {"docid": [str(i) for i in range(len(pool))], "title": [""] * len(pool), "text": pool}
    )
    queries = datasets.Dataset.from_dict(
        {"query_id": [str(i) for i in range(len(rows))], "text": [r["query"] for r in rows]}
    )
    return dense_run(encoder, corpus, queries, min(depth, len(pool)))


def mine_flag_rows(
    rows: list[dict],
    pool: list[str],
    run: Mapping[str, Mapping[str, float]],
    window: tuple[int, int],
    negative_number: int,
    seed: int = 42,
) -> list[dict]:
    """FlagEmbedding's ``hn_mine.py`` on densekit's search: each row's ``neg`` becomes
    ``negative_number`` texts drawn at random from its ranks ``window`` of ``run`` (row index ->
    pool index -> score), never a positive or the query itself, topped up with random pool
    texts when the window holds too few. Every other key of a row is kept."""
    out = []
    for index, row in enumerate(rows):
        rng = random.Random(f"{seed}:{index}")
        positives = set(row["pos"])
        ranked_hits = ranked(run.get(str(index), {}))[window[0] : window[1]]
        texts = [pool[int(docid)] for docid, _ in ranked_hits]
        candidates = [t for t in texts if t not in positives and t != row["query"]]
        if len(candidates) > negative_number:
            candidates = rng.sample(candidates, negative_number)
        if len(candidates) < negative_number:
            others = [t for t in pool if t not in positives and t not in candidates]
            candidates += rng.sample(others, min(len(others), negative_number - len(candidates)))
        out.append({**row, "neg": candidates})
    return out
