"""``densekit merge-runs``: runs of passage shards searched apart -> one exact top-k run.

Search on several machines at once: each searches the same queries against its own passage
shards (``densekit search --passage_reps <its shards> --depth K``, TREC output), then this merges
their runs. Hits are ordered by score, ties by docid, so the merged run equals one search over
every shard (exactly, with Flat indexes).
"""

from __future__ import annotations

import argparse
import glob
import sys

from densekit.atomic import check_target
from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.data.runs import FORMATS, Run, read_run, write_run
from densekit.data.text_files import iter_columns
from densekit.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("densekit merge-runs", __doc__)
    parser.add_argument(
        "--runs", nargs="+", required=True, help="TREC runs of the shards (files or globs)"
    )
    parser.add_argument("--depth", type=int, default=100, help="documents kept per query")
    parser.add_argument("--save_ranking_to", required=True, help="run file to write")
    parser.add_argument(
        "--ranking_format", choices=FORMATS, default="trec", help="layout of the run file"
    )
    parser.add_argument("--run_tag", default="densekit", help="tag in the run's last column")
    return parser


def _paths(patterns: list[str]) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) or ([pattern] if glob.escape(pattern) == pattern else [])
        if not found:
            raise ConfigError(f"--runs {pattern!r} matches no file")
        paths.extend(found)
    return paths


def _read_scored(path: str) -> Run:
    """A TREC run: merging needs the scores (an MS MARCO run only has ranks)."""
    next(iter_columns(path, {6: "TREC: qid Q0 docid rank score tag; merging needs scores"}), None)
    return read_run(path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.depth < 1:
        raise ConfigError(f"--depth must be positive, got {args.depth}")
    check_target(args.save_ranking_to, folder=False)
    from densekit.retrieval.search import merge_runs

    runs = [_read_scored(path) for path in _paths(args.runs)]
    merged = merge_runs(runs, args.depth)
    write_run(args.save_ranking_to, merged, tag=args.run_tag, fmt=args.ranking_format)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
