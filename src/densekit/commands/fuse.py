"""``densekit fuse``: combine runs (e.g. BM25 + dense) by reciprocal rank or weighted score fusion.

``--method rrf`` (the default) needs no tuning. ``--method weighted`` normalises each run's
scores per query and sums them with ``--weights``, or with weights tuned on dev qrels
(``--tune_on``) over a grid of the simplex.
"""

from __future__ import annotations

import argparse
import json
import sys

from densekit.atomic import atomic_open, check_target
from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.data.qrels import load_qrels
from densekit.data.runs import FORMATS, read_run, write_run
from densekit.errors import ConfigError
from densekit.evaluation.fusion_tuning import tune_weights
from densekit.retrieval.fusion import Fusion, check_options, fuse


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("densekit fuse", __doc__)
    parser.add_argument("--runs", nargs="+", required=True, help="TREC or MS MARCO run files")
    parser.add_argument("--method", default="rrf", help="rrf (default) or weighted")
    parser.add_argument("--rrf_k", type=float, default=60.0, help="RRF constant k (default 60)")
    parser.add_argument("--weights", help="one weight per run for --method weighted, e.g. 0.3,0.7")
    parser.add_argument(
        "--normalize", default="minmax", help="per-query score normalisation: minmax|zscore|none"
    )
    parser.add_argument("--depth", type=int, default=100, help="documents kept per query")
    parser.add_argument("--save_ranking_to", required=True, help="run file to write")
    parser.add_argument(
        "--ranking_format", choices=FORMATS, default="trec", help="layout of the run file"
    )
    parser.add_argument("--run_tag", default="fused", help="tag in the run's last column")
    parser.add_argument("--tune_on", help="dev qrels to tune the weights of --method weighted on")
    parser.add_argument("--metric", default="ndcg@10", help="metric --tune_on maximises")
    parser.add_argument("--grid_step", type=float, default=0.1, help="weight grid step (divides 1)")
    parser.add_argument("--tuning_output", help="JSON file for the tuned weights and the grid")
    return parser


def _parse_weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--weights must be comma-separated numbers, got {text!r}") from None


def _check(args: argparse.Namespace, weights: list[float] | None) -> None:
    """Every flag problem, before any run is read or anything written."""
    check_options(args.method, len(args.runs), args.rrf_k, weights, args.normalize)
    if args.depth < 1:
        raise ConfigError(f"--depth must be positive, got {args.depth}")
    if args.tune_on and args.method != "weighted":
        raise ConfigError("--tune_on tunes the weights of --method weighted; rrf has none")
    if args.tune_on and weights is not None:
        raise ConfigError("give --weights or --tune_on, not both")
    if args.tuning_output and not args.tune_on:
        raise ConfigError("--tuning_output needs --tune_on")
    check_target(args.save_ranking_to, folder=False)
    if args.tuning_output:
        check_target(args.tuning_output, folder=False)


def _report(paths: list[str], fused: Fusion) -> None:
    total = len(fused.run)
    for path, lacked in zip(paths, fused.missing, strict=True):
        print(f"{path}: lacked {lacked} of {total} fused queries")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    weights = _parse_weights(args.weights)
    _check(args, weights)
    runs = [read_run(path) for path in args.runs]
    tuning = None
    if args.tune_on:
        qrels = load_qrels(args.tune_on)
        tuning = tune_weights(runs, qrels, args.metric, args.grid_step, args.normalize, args.depth)
        weights = list(tuning.weights)
        shown = ",".join(f"{w:g}" for w in weights)
        print(f"tuned weights {shown}: {tuning.metric} {tuning.value:.4f} on {args.tune_on}")
    fused = fuse(
        runs,
        args.method,
        k=args.rrf_k,
        weights=weights,
        normalize=args.normalize,
        depth=args.depth,
    )
    _report(args.runs, fused)
    write_run(args.save_ranking_to, fused.run, tag=args.run_tag, fmt=args.ranking_format)
    if tuning is not None and args.tuning_output:
        result = {"runs": args.runs, "normalize": args.normalize, "grid_step": args.grid_step}
        with atomic_open(args.tuning_output, "w", encoding="utf-8") as handle:
            json.dump({**result, **tuning.as_dict()}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
