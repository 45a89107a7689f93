"""Ablation of the recipe's fine-tuning on the SciFact dev split (quality and time per change).

``--prepare`` runs the stages every variant shares once (BM25 and the zero-shot model over the
dev and train queries) and keeps their runs in ``--out``; each variant then mines its own
negatives from them, fine-tunes the base model and is scored on dev only (never a test split):

    python bench/recipe_ablation.py --out runs/ablation --prepare \\
        --variant "" --variant "epochs=3,learning_rate=1e-4" --variant "mine_source=hybrid"

A variant is ``key=value`` pairs over ``RecipeConfig`` fields (the empty variant is the
defaults); ``mine2`` additionally re-mines negatives with the variant's fine-tuned model and
trains again from the base model. Each row also gets the dev-tuned fusion with BM25.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import datasets
from _common import header

from densekit.data.runs import Run, read_run, write_run
from densekit.evaluation.fusion_tuning import tune_weights
from densekit.evaluation.metrics import evaluate
from densekit.recipes.config import RecipeConfig, add_flags
from densekit.recipes.data import RecipeData, load_data
from densekit.recipes.pipeline import fine_tune, mine, mining_run, model_run
from densekit.recipes.results import METRICS
from densekit.resources import bundled_model_path
from densekit.retrieval.bm25 import bm25_run
from densekit.retrieval.fusion import fuse


def _variant(base: RecipeConfig, spec: str) -> tuple[RecipeConfig, bool]:
    """The base config with the spec's ``key=value`` pairs parsed as the recipe's flags."""
    parser = argparse.ArgumentParser(prog="variant")
    add_flags(parser)
    pairs = [f"--{part}" for part in spec.split(",") if part and part != "mine2"]
    given = {k: v for k, v in vars(parser.parse_args(pairs)).items() if v is not None}
    config = replace(base, **given)
    config.check()
    return config, "mine2" in spec.split(",")


def _all_queries(data: RecipeData) -> datasets.Dataset:
    both = [data.queries_of(data.dev_qrels), data.queries_of(data.train_qrels)]
    return datasets.concatenate_datasets(both)


def prepare(config: RecipeConfig, data: RecipeData, out: Path) -> None:
    """BM25 and zero-shot runs over dev + train queries, written once for every variant."""
    queries, model = _all_queries(data), config.model or bundled_model_path()
    for name, make in (
        ("bm25", lambda: bm25_run(data.corpus, queries, config.depth)),
        ("zero-shot", lambda: model_run(config, model, data.corpus, queries)),
    ):
        start = time.perf_counter()
        write_run(out / f"{name}.trec", make())
        print(f"prepared {name} in {time.perf_counter() - start:.0f} s", flush=True)


def _dev(run: Run, data: RecipeData) -> Run:
    return {q: hits for q, hits in run.items() if q in data.dev_qrels}


def run_variant(base: RecipeConfig, spec: str, runs: dict[str, Run], out: Path) -> dict:
    config, remine = _variant(base, spec)
    data, model = load_data(config), config.model or bundled_model_path()
    start = time.perf_counter()
    train_file, _ = mine(config, data, mining_run(config, runs["zero-shot"], runs["bm25"]), out)
    fine_tune(config, model, train_file, out / "model")
    if remine:  # second round: negatives from the fine-tuned model, then train from the base
        tuned_run = model_run(config, str(out / "model"), data.corpus, _all_queries(data))
        second, _ = mine(config, data, mining_run(config, tuned_run, runs["bm25"]), out)
        fine_tune(config, model, second, out / "model-2")
    seconds = time.perf_counter() - start
    final = str(out / ("model-2" if remine else "model"))
    run = model_run(config, final, data.corpus, data.queries_of(data.dev_qrels))
    write_run(out / "fine-tuned.dev.trec", run)
    pair = [_dev(runs["bm25"], data), run]
    tuning = tune_weights(pair, data.dev_qrels, METRICS[0], step=0.1)
    fused = fuse(pair, "weighted", weights=tuning.weights, depth=config.depth).run
    return {
        "variant": spec or "defaults",
        **evaluate(run, data.dev_qrels, METRICS)[1],
        "hybrid_ndcg@10": evaluate(fused, data.dev_qrels, METRICS[:1])[1][METRICS[0]],
        "bm25_weight": tuning.weights[0],
        "train_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the shared runs and variants")
    parser.add_argument("--prepare", action="store_true", help="compute the shared runs first")
    parser.add_argument("--variant", action="append", default=[])
    args = parser.parse_args()
    header("recipe ablation (dev split)", args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = RecipeConfig(output_dir=str(out))
    data = load_data(base)
    if args.prepare:
        prepare(base, data, out)
    runs = {name: read_run(out / f"{name}.trec") for name in ("bm25", "zero-shot")}
    rows = []
    for number, spec in enumerate(args.variant):
        folder = out / f"v{number}"
        folder.mkdir(parents=True, exist_ok=True)
        rows.append(run_variant(base, spec, runs, folder))
        print(json.dumps(rows[-1]), flush=True)
    print("| variant | nDCG@10 | MRR@10 | R@100 | + BM25 nDCG@10 | mine+train s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['ndcg@10']:.4f} | {row['mrr@10']:.4f} | "
            f"{row['recall@100']:.4f} | {row['hybrid_ndcg@10']:.4f} | {row['train_seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
