"""``densekit evaluate-checkpoints``: score checkpoints and name the best (PaddleNLP's evaluation).

Accepts PaddleNLP's line unchanged apart from the module: ``--query_model`` and
``--passage_model`` (untied towers when they differ), ``--query_max_length`` /
``--passage_max_length``, ``--evaluate_all`` (every complete ``checkpoint-*`` beside the given
one, and the final model). Without ``--corpus/--queries/--qrels`` it evaluates on the bundled
SciFact dev split. Prints one table, names the best, writes the table as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.errors import ConfigError
from densekit.resources import bundled_data_dir

logger = logging.getLogger("densekit.evaluate_checkpoints")


def build_parser() -> argparse.ArgumentParser:
    p = new_parser("densekit evaluate-checkpoints", __doc__)
    p.add_argument("--output_dir", "--query_model", required=True, help="run folder or checkpoint")
    p.add_argument("--passage_model", default=None, help="passage tower (default: the same)")
    p.add_argument("--evaluate_all", action="store_true", help="every checkpoint of the run")
    p.add_argument(
        "--query_max_length",
        "--query_max_len",
        type=int,
        default=None,
        help="query tokens kept (default: the model's)",
    )
    p.add_argument(
        "--passage_max_length",
        "--passage_max_len",
        type=int,
        default=None,
        help="passage tokens kept (default: the model's)",
    )
    p.add_argument("--model_type", default=None, help="accepted; read from config.json instead")
    data = bundled_data_dir()
    p.add_argument(
        "--corpus", default=str(data / "corpus.jsonl"), help="corpus (default: bundled SciFact)"
    )
    p.add_argument(
        "--queries", default=str(data / "queries.jsonl"), help="queries (default: bundled SciFact)"
    )
    p.add_argument(
        "--qrels",
        default=str(data / "qrels" / "dev.tsv"),
        help="judged queries (default: bundled SciFact dev split)",
    )
    p.add_argument(
        "--metrics",
        default="ndcg@10,mrr@10,recall@100",
        help="comma-separated NAME@K list; the first picks the best",
    )
    p.add_argument("--depth", type=int, default=100, help="search depth per query")
    p.add_argument("--bf16", action="store_true", help="encode in bf16")
    p.add_argument("--save_to", default=None, help="JSON file (default: <run>/checkpoints.json)")
    return p


def _run_dir(model: Path, evaluate_all: bool) -> Path:
    """The run folder: the given one, or the parent of a ``checkpoint-N`` with --evaluate_all."""
    if evaluate_all and re.fullmatch(r"checkpoint-\d+", model.name):
        return model.parent
    return model


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from densekit.atomic import atomic_open, check_target
    from densekit.data.qrels import keep_judged, load_qrels
    from densekit.data.readers import load_corpus, load_queries
    from densekit.evaluation.checkpoints import best_row, evaluate_checkpoints, score_model
    from densekit.evaluation.metrics import format_table, parse_metrics

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if args.model_type:
        logger.info("--model_type %s ignored: the type is read from config.json", args.model_type)
    metrics = parse_metrics(args.metrics)
    model = Path(args.output_dir)
    if not model.is_dir():
        raise ConfigError(f"{model} is not a folder")
    run_dir = _run_dir(model, args.evaluate_all)
    target = args.save_to or str(run_dir / "checkpoints.json")
    check_target(target, folder=False)
    qrels = load_qrels(args.qrels)
    data = (load_corpus(args.corpus), keep_judged(load_queries(args.queries), qrels, args.qrels))
    lengths = {"query_max_len": args.query_max_length, "passage_max_len": args.passage_max_length}
    if args.evaluate_all or any(model.glob("checkpoint-*")):
        if args.passage_model:
            raise ConfigError("--passage_model names one model; it cannot go with --evaluate_all")
        rows = evaluate_checkpoints(
            run_dir, *data, qrels, metrics, args.depth, args.bf16, **lengths
        )
    elif not (model / "config.json").is_file():
        raise ConfigError(f"{model} holds no complete checkpoint-* folder and no model")
    else:
        scores = score_model(
            model, args.passage_model, (*data, qrels), metrics, args.depth, args.bf16, **lengths
        )
        rows = {model.name: scores}
    print(format_table(rows, metrics, label="checkpoint"))
    best = best_row(rows, metrics[0])
    print(f"best by {metrics[0]}: {best} ({rows[best][metrics[0]]:.4f})")
    with atomic_open(target, "w") as handle:
        json.dump({"checkpoints": rows, "best": best, "metric": metrics[0]}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
