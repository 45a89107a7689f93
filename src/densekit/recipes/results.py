"""The recipe's tables: each system's run scored on a split, pairwise significance, files.

Every row of a table is tested against every other on nDCG@10 (paired randomization test,
Holm-corrected over all pairs), so the table says which differences are real and which are
noise on a few hundred queries.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from densekit.atomic import atomic_open
from densekit.data.runs import Run, write_run
from densekit.evaluation.metrics import evaluate, format_table
from densekit.evaluation.significance import Comparison, pairwise
from densekit.recipes.data import Qrels

logger = logging.getLogger("densekit.recipe")

METRICS = ["ndcg@10", "mrr@10", "recall@100"]
SIGNIFICANCE_LEVEL = 0.05
Results = dict[str, dict[str, float]]


class Recorder:
    """Writes each system's run, scores it on a split's qrels and keeps the run for the tests."""

    def __init__(self, out: Path, split: str, qrels: Qrels) -> None:
        self.out, self.split, self.qrels = out, split, qrels
        self.results: Results = {}
        self.runs: dict[str, Run] = {}

    def __call__(self, system: str, run: Run, seconds: float) -> None:
        run = {q: hits for q, hits in run.items() if q in self.qrels}
        write_run(self.out / "runs" / f"{system}.{self.split}.trec", run, tag=system)
        _, mean = evaluate(run, self.qrels, METRICS)
        self.results[system] = {**mean, "seconds": seconds}
        self.runs[system] = run
        logger.info("%s %s: %s", self.split, system, json.dumps(self.results[system]))

    def significance(self, seed: int = 0) -> list[Comparison]:
        """Every pair of systems on nDCG@10, Holm-corrected over the pairs."""
        return pairwise(self.runs, self.qrels, METRICS[0], seed=seed)


def beats(comparisons: list[Comparison]) -> dict[str, list[str]]:
    """For each system, the systems it beats significantly on nDCG@10 (Holm p < 0.05)."""
    won: dict[str, list[str]] = {}
    for row in comparisons:
        if row.holm_p < SIGNIFICANCE_LEVEL and row.difference != 0:
            winner, loser = (
                (row.run, row.baseline) if row.difference > 0 else (row.baseline, row.run)
            )
            won.setdefault(winner, []).append(loser)
    return won


def format_results(results: Results, comparisons: list[Comparison] | None = None) -> str:
    """Markdown table: one row per system, nDCG@10, MRR@10, Recall@100, seconds and, with
    ``comparisons``, which systems the row beats significantly."""
    table = format_table(results, [*METRICS, "seconds"], label="system", markdown=True)
    if comparisons is None:
        return table
    won = beats(comparisons)
    lines = table.splitlines()
    lines[0] += " beats (nDCG@10, Holm p < 0.05) |"
    lines[1] += "---|"
    for i, system in enumerate(results, start=2):
        lines[i] += f" {', '.join(won.get(system, [])) or '-'} |"
    return "\n".join(lines)


def write_results(out: Path, tables: dict[str, Recorder], extra: dict[str, Any]) -> str:
    """``results.md`` and ``results.json`` (per split: metrics and pairwise tests), atomically;
    returns the Markdown."""
    sections, summary = [], dict(extra)
    for split, record in tables.items():
        comparisons = record.significance()
        title = split if split == "dev" else f"{split} (evaluated once, after every choice on dev)"
        sections.append(f"## {title}\n\n{format_results(record.results, comparisons)}")
        key = "results" if split == "dev" else f"{split}_results"
        summary[key] = record.results
        summary[f"{split}_significance"] = [asdict(row) for row in comparisons]
    summary.setdefault("test_results", None)
    text = "\n\n".join(sections)
    if "kept_checkpoint" in extra:
        text += f"\n\nFine-tuning kept {describe_kept(extra['kept_checkpoint'])}."
    if extra.get("distill"):
        text += "\n\n" + describe_distill(extra["distill"])
    if extra.get("rerank"):
        text += "\n\n" + describe_rerank(extra["rerank"])
    with atomic_open(out / "results.md", "w") as handle:
        handle.write(text + "\n")
    with atomic_open(out / "results.json", "w") as handle:
        json.dump(summary, handle, indent=2)
    return text


def describe_kept(kept: dict[str, Any]) -> str:
    """One line: which checkpoint fine-tuning kept, on what dev score, out of which."""
    scores = ", ".join(f"step {s}: {v:.4f}" for s, v in kept["evaluations"])
    if not kept.get("checkpoint"):
        return f"the last weights (no evaluation during training){'; ' + scores if scores else ''}"
    if kept["checkpoint"] == "zero-shot":
        return f"the zero-shot model: no evaluation beat it on dev ({kept['metric']}: {scores})"
    return f"{kept['checkpoint']} (dev {kept['metric']} {kept['best']:.4f}; evaluations: {scores})"


def describe_rerank(rerank: dict[str, Any]) -> str:
    """One line: what the cross-encoder reranked and the fusion weight chosen on dev."""
    return (
        f"rerank: the cross-encoder reranked the top {rerank['depth']} of {rerank['first_stage']} "
        f"(the best first stage on dev); rerank+hybrid gives its score the weight "
        f"{rerank['rerank_weight']:g} (tuned on dev)."
    )


def describe_distill(summary: dict[str, Any]) -> str:
    """One line: the distillation round's dev score against the first round's, and the verdict."""
    verdict = "kept: it is the recipe's dense model" if summary["kept"] else "dropped"
    return (
        f"distill: the second round, on the cross-encoder's scores, reached dev "
        f"{summary['metric']} {summary['second_round']:.4f} against the first round's "
        f"{summary['first_round']:.4f} ({verdict})."
    )
