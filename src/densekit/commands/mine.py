"""``densekit mine``: hard negatives into a training file (Tevatron's or FlagEmbedding's form).

From a run and qrels (``--run --qrels --corpus --queries --output``), or as FlagEmbedding's
``hn_mine.py`` (``--input_file --output_file --embedder_name_or_path``, v1: ``--model_name_or_path``,
optional ``--candidate_pool``): its rows are searched with the model and get new ``neg`` lists.
Its flags densekit has no use for are in the peer flag table (:mod:`densekit.compat.flags`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from densekit.atomic import atomic_open, check_target
from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.compat import apply as peer_apply
from densekit.compat.apply import instruction_prefix
from densekit.compat.flags import notice
from densekit.errors import ConfigError, DataError

if TYPE_CHECKING:
    from densekit.encoders import TextEncoder

# embedder_model_class -> pooling (None: --pooling_method); BGE-M3's dense vector is the CLS.
# decoder-only-icl is refused by the peer flag table (in-context examples).
# densekit.retrieval.mine's choices, here so that --help loads no data library (a test holds it)
OUTPUT_FORMATS = ("tevatron", "flagembedding")
SAMPLES = ("top", "random")
_FLAG_CLASSES = {
    "encoder-only-base": None,
    "encoder-only-m3": "cls",
    "decoder-only-base": "last",
    "decoder-only-icl": None,
}


def build_parser() -> argparse.ArgumentParser:
    p = new_parser("densekit mine", __doc__)
    p.add_argument("--run", help="TREC or MS MARCO run file")
    p.add_argument("--qrels", help="qrels file: the positives (BEIR tsv or TREC)")
    p.add_argument("--corpus", help="corpus file or folder (jsonl or tsv)")
    p.add_argument("--queries", help="queries file (jsonl or tsv)")
    p.add_argument("--output", help="training jsonl to write")
    p.add_argument(
        "--output_format", choices=OUTPUT_FORMATS, default="tevatron", help="training file layout"
    )
    p.add_argument("--range_min", type=int, default=0, help="first rank used (0-based)")
    p.add_argument("--range_max", type=int, default=100, help="rank after the last used")
    p.add_argument("--negative_number", type=int, default=None, help="default 30 (FE: 15)")
    p.add_argument(
        "--perc_pos",
        type=float,
        default=0.95,
        help="drop candidates scoring above this fraction of the positive's score; 0 disables",
    )
    p.add_argument(
        "--sample",
        choices=SAMPLES,
        default="top",
        help="top: the best-ranked candidates; random: a seeded sample of the range",
    )
    p.add_argument("--seed", type=int, default=42, help="seed of --sample random")
    fe = p.add_argument_group("FlagEmbedding hn_mine.py")
    fe.add_argument("--input_file", help="FlagEmbedding training jsonl (query, pos, neg)")
    fe.add_argument("--output_file", help="the same rows with mined neg lists")
    fe.add_argument("--candidate_pool", help="jsonl of {text}; default: every pos/neg text")
    fe.add_argument("--range_for_sampling", default="10-210", help="0-based ranks START-END")
    fe.add_argument("--embedder_name_or_path", help="the model that searches")
    fe.add_argument(
        "--embedder_model_class",
        choices=sorted(_FLAG_CLASSES),
        default=None,
        help="sets the pooling (m3: cls, decoder-only: last); decoder-only-icl is refused",
    )
    fe.add_argument(
        "--normalize_embeddings", type=_bool, default=True, help="L2-normalize (True/False)"
    )
    fe.add_argument("--pooling_method", default="cls", help="cls|mean|last")
    fe.add_argument("--query_instruction_for_retrieval", default=None, help="query instruction")
    fe.add_argument(
        "--query_instruction_format_for_retrieval",
        default="{}{}",
        help="format(instruction, query); the query must come last",
    )
    fe.add_argument("--embedder_query_max_length", type=int, default=512, help="query tokens")
    fe.add_argument("--embedder_passage_max_length", type=int, default=512, help="passage tokens")
    fe.add_argument("--batch_size", type=int, default=64, help="encoding batch")
    fe.add_argument(
        "--trust_remote_code",
        type=_bool,
        default=False,
        help="accepted; densekit runs no model code",
    )
    fe.add_argument("--examples_for_task", help="decoder-only-icl only: refused")
    fe.add_argument(
        "--examples_instruction_format", default="{}{}", help="decoder-only-icl only: unused"
    )
    peer_apply.add_to_parser(p, "mine")  # v1's --model_name_or_path; unused flags reported
    return p


def _bool(text: str) -> bool:
    from transformers.hf_argparser import string_to_bool

    return string_to_bool(text)


def _negatives(args: argparse.Namespace, default: int) -> int:
    """``--negative_number``, ``default`` when not given; 0 or less is refused, not defaulted."""
    if args.negative_number is None:
        return default
    if args.negative_number < 1:
        raise ConfigError(f"--negative_number must be positive, got {args.negative_number}")
    return args.negative_number


def _from_run(args: argparse.Namespace) -> int:
    missing = [f"--{n}" for n in ("run", "qrels", "corpus", "queries", "output") if not getattr(args, n)]  # fmt: skip
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (or give FlagEmbedding's --input_file)")
    check_target(args.output, folder=False)
    from densekit.data.qrels import load_qrels
    from densekit.data.readers import load_corpus, load_queries
    from densekit.data.runs import read_run
    from densekit.retrieval import mine

    _negatives(args, 30)
    qrels = load_qrels(args.qrels)
    run = read_run(args.run)
    if not any(qid in qrels for qid in run):
        raise DataError(args.run, f"no query of the run is judged in {args.qrels}")
    negatives, report = mine.mine_negatives(
        run,
        qrels,
        range_min=args.range_min,
        range_max=args.range_max,
        negative_number=_negatives(args, 30),
        perc_pos=args.perc_pos if args.perc_pos > 0 else None,
        seed=args.seed,
        sample=args.sample,
    )
    mine.write_training_file(
        args.output,
        negatives,
        qrels,
        load_queries(args.queries),
        load_corpus(args.corpus),
        sources=(args.qrels, args.run, args.corpus, args.queries),
        fmt=args.output_format,
    )
    with atomic_open(f"{args.output}.report.json", "w", encoding="utf-8") as handle:
        json.dump(asdict(report), handle, indent=2)
        handle.write("\n")
    for line in report.lines():
        print(line)
    return 0


def _flag_encoder(args: argparse.Namespace) -> TextEncoder:
    from densekit.encoders import EncoderSpec, load_encoder

    if not args.embedder_name_or_path:
        raise ConfigError("--input_file needs --embedder_name_or_path (the model that searches)")
    if args.trust_remote_code:
        notice("--trust_remote_code True is ignored: densekit runs no model code of its own")
    prefix = instruction_prefix(
        "query_instruction_format_for_retrieval",
        args.query_instruction_format_for_retrieval,
        args.query_instruction_for_retrieval,
    )
    pooling = _FLAG_CLASSES.get(args.embedder_model_class) or args.pooling_method
    settings = {
        "pooling": pooling,
        "normalize": args.normalize_embeddings,
        "query_prefix": prefix or "",
        "passage_prefix": "",
        "query_max_len": args.embedder_query_max_length,
        "passage_max_len": args.embedder_passage_max_length,
    }
    return load_encoder(
        EncoderSpec(args.embedder_name_or_path, precision="fp32", overrides=settings)
    )


def _flag_mode(args: argparse.Namespace) -> int:
    """FlagEmbedding's hn_mine.py: rows in, the same rows with mined ``neg`` out."""
    if not args.output_file:
        raise ConfigError("--input_file needs --output_file")
    check_target(args.output_file, folder=False)
    from densekit.retrieval import mine

    _negatives(args, 15)
    window = mine.parse_range(args.range_for_sampling)
    rows = mine.read_flag_rows(args.input_file)
    if args.candidate_pool:
        pool = mine.read_pool(args.candidate_pool)
    else:
        pool = list(dict.fromkeys(t for r in rows for t in r["pos"] + r.get("neg", [])))
    run = mine.flag_search(_flag_encoder(args), rows, pool, depth=window[1])
    mined = mine.mine_flag_rows(rows, pool, run, window, _negatives(args, 15), args.seed)
    with atomic_open(args.output_file, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in mined)
    short = sum(len(r["neg"]) < _negatives(args, 15) for r in mined)
    print(f"densekit mine: {len(mined)} rows to {args.output_file} ({short} short of negatives)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    peer_apply.apply_mine(args)
    return _flag_mode(args) if args.input_file else _from_run(args)


if __name__ == "__main__":
    sys.exit(run_guarded(main))
