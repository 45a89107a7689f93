"""``densekit compare``: are the differences between runs significant? Paired tests + Holm.

The first run is the baseline; every other run is compared with it on every metric (paired
t-test and paired randomization test), Holm-corrected across runs and metrics.
"""

from __future__ import annotations

import argparse
import json
import sys

from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("densekit compare", __doc__)
    parser.add_argument("runs", nargs="+", help="run files; the first is the baseline")
    parser.add_argument("--qrels", required=True, help="qrels file (BEIR tsv or TREC)")
    parser.add_argument(
        "--metrics", default="ndcg@10,mrr@10,recall@100", help="comma-separated NAME@K list"
    )
    parser.add_argument("--resamples", type=int, default=10_000, help="randomization resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomization test")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (Holm)")
    parser.add_argument("--output", help="JSON file with every comparison and per-query detail")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 < args.alpha < 1.0:
        raise ConfigError(f"--alpha {args.alpha}: a significance level lies between 0 and 1")
    from densekit.atomic import atomic_open, check_target
    from densekit.data.qrels import load_qrels
    from densekit.data.runs import read_run
    from densekit.evaluation.metrics import format_table, parse_metrics
    from densekit.evaluation.significance import as_dicts, compare_runs

    if args.output:
        check_target(args.output, folder=False)
    metrics = parse_metrics(args.metrics)
    qrels = load_qrels(args.qrels)
    runs = {path: read_run(path) for path in args.runs}
    rows = compare_runs(runs, qrels, metrics, args.resamples, args.seed)
    covered = {path: sum(q in run for q in qrels) for path, run in runs.items()}
    uneven = len(set(covered.values())) > 1
    table = {
        f"{row.run} {row.metric}": {
            "baseline": row.baseline_mean,
            "run": row.run_mean,
            "diff": row.difference,
            "t-test p": row.t_test_p,
            "rand. p": row.randomization_p,
            "Holm p": row.holm_p,
        }
        for row in rows
    }
    print(
        format_table(
            table, ["baseline", "run", "diff", "t-test p", "rand. p", "Holm p"], "run metric"
        )
    )
    if uneven:
        counts = ", ".join(f"{path}: {n}" for path, n in covered.items())
        print(
            f"note: the runs cover different judged queries (of {len(qrels)}: {counts}); a "
            "query a run misses scores 0, so a difference may come from coverage alone"
        )
    for row in rows:
        mark = "significant" if row.holm_p < args.alpha else "not significant"
        if uneven and covered[row.run] != covered[args.runs[0]]:
            mark += f" (coverage differs: {covered[row.run]} vs {covered[args.runs[0]]} queries)"
        print(
            f"{row.run} {row.metric}: {row.wins} wins, {row.ties} ties, {row.losses} losses; {mark}"
        )
    if args.output:
        with atomic_open(args.output, "w", encoding="utf-8") as handle:
            report = {"baseline": args.runs[0], "comparisons": as_dicts(rows)}
            json.dump({**report, "judged_queries_covered": covered}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
