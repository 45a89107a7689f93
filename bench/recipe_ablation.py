"""Ablation of the recipe's fine-tuning on the SciFact dev split (quality and time per change).

Starts from a finished recipe folder (its mined ``train.mined.jsonl`` and ``recipe_config.json``)
and fine-tunes the base model once per variant, scoring each on dev only (never a test split):

    python bench/recipe_ablation.py --recipe runs/gc-base --out runs/ablation \
        --variant "epochs=3" --variant "epochs=3,learning_rate=1e-4" --variant "mine2"

A variant is ``key=value`` pairs over ``RecipeConfig`` fields; ``mine2`` additionally re-mines
negatives with the variant's first fine-tuned model and trains again from the base model.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields, replace
from pathlib import Path

from _common import header

from densekit.evaluation.metrics import evaluate
from densekit.recipes.config import RecipeConfig
from densekit.recipes.data import load_data
from densekit.recipes.pipeline import fine_tune, mine, model_run
from densekit.recipes.results import METRICS
from densekit.resources import bundled_model_path


def _variant(base: RecipeConfig, spec: str) -> tuple[RecipeConfig, bool]:
    kinds = {f.name: f.type for f in fields(RecipeConfig)}
    config, remine = replace(base), False
    for part in filter(None, spec.split(",")):
        if part == "mine2":
            remine = True
            continue
        key, value = part.split("=", 1)
        kind = float if "float" in str(kinds[key]) else int if "int" in str(kinds[key]) else str
        setattr(config, key, kind(value) if kind is not str else value)
    return config, remine


def _score(config: RecipeConfig, data, model: str) -> tuple[dict, object]:
    queries = data.queries_of(data.dev_qrels)
    run = model_run(config, model, data.corpus, queries)
    return evaluate(run, data.dev_qrels, METRICS)[1], run


def run_variant(base: RecipeConfig, spec: str, train_file: Path, out: Path) -> dict:
    config, remine = _variant(base, spec)
    data, model = load_data(config), config.model or bundled_model_path()
    start = time.perf_counter()
    fine_tune(config, model, train_file, out / "model")
    if remine:  # second round: negatives from the fine-tuned model, then train from the base
        both = data.queries_of({**data.train_qrels, **data.dev_qrels})
        tuned_run = model_run(config, str(out / "model"), data.corpus, both)
        second, _ = mine(config, data, tuned_run, out)
        fine_tune(config, model, second, out / "model-2")
    seconds = time.perf_counter() - start
    final = str(out / ("model-2" if remine else "model"))
    mean, _ = _score(config, data, final)
    return {"variant": spec, **mean, "train_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True, help="a finished recipe output folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", action="append", required=True)
    args = parser.parse_args()
    header("recipe ablation (dev split)", args)
    recipe = Path(args.recipe)
    saved = json.loads((recipe / "recipe_config.json").read_text())
    base = RecipeConfig(**saved)
    rows = []
    for number, spec in enumerate(args.variant):
        folder = Path(args.out) / f"v{number}"
        folder.mkdir(parents=True, exist_ok=True)
        rows.append(run_variant(base, spec, recipe / "train.mined.jsonl", folder))
        print(json.dumps(rows[-1]), flush=True)
    print("| variant | nDCG@10 | MRR@10 | R@100 | train+mine s |\n|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['ndcg@10']:.4f} | {row['mrr@10']:.4f} | "
            f"{row['recall@100']:.4f} | {row['train_seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
