"""``densekit evaluate-checkpoints``: score every checkpoint of a training run (PaddleNLP's
``--evaluate_all``): encode, exact search and evaluate each ``checkpoint-*`` folder (and the
final model) on one corpus, query set and qrels, then print one table and write it as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from densekit.atomic import atomic_open
from densekit.data.qrels import load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.errors import ConfigError
from densekit.evaluation.metrics import evaluate, parse_metrics
from densekit.modeling.encoder import CONFIG_NAME, DenseEncoder, load_tokenizer
from densekit.pipeline import dense_run


def checkpoints(run_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` folders by step, then the run folder itself when it holds a final model."""
    folder = Path(run_dir)
    found = sorted(
        (p for p in folder.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)),
        key=lambda p: int(p.name.split("-")[1]),
    )
    if (folder / CONFIG_NAME).is_file():
        found.append(folder)
    if not found:
        raise ConfigError(f"{folder} holds no checkpoint-* folder and no final model")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="densekit evaluate-checkpoints", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--output_dir", "--query_model", required=True, help="training run folder")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--qrels", required=True, help="only these queries are evaluated")
    parser.add_argument("--metrics", default="ndcg@10,mrr@10,recall@100")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument(
        "--save_to", default=None, help="JSON file (default: <run>/checkpoints.json)"
    )
    args = parser.parse_args(argv)
    metrics = parse_metrics(args.metrics)
    qrels = load_qrels(args.qrels)
    corpus = load_corpus(args.corpus)
    queries = load_queries(args.queries).filter(lambda q: q in qrels, input_columns="query_id")
    if len(queries) == 0:
        raise ConfigError(f"no query of {args.queries} is judged in {args.qrels}")
    rows = {}
    for folder in checkpoints(args.output_dir):
        encoder = DenseEncoder.from_pretrained(str(folder))
        run = dense_run(
            encoder, load_tokenizer(str(folder)), corpus, queries, args.depth, args.bf16
        )
        _, mean = evaluate({q: dict(hits) for q, hits in run.items()}, qrels, metrics)
        rows[folder.name if folder != Path(args.output_dir) else "final"] = mean
        print(f"{folder.name}: " + ", ".join(f"{m} {v:.4f}" for m, v in mean.items()), flush=True)
    width = max(len(name) for name in rows)
    print(f"{'checkpoint':<{width}}  " + "  ".join(f"{m:>10}" for m in metrics))
    for name, mean in rows.items():
        print(f"{name:<{width}}  " + "  ".join(f"{mean[m]:10.4f}" for m in metrics))
    target = args.save_to or str(Path(args.output_dir) / "checkpoints.json")
    with atomic_open(target, "w") as handle:
        json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    from densekit.cli import run_guarded

    sys.exit(run_guarded(main))
