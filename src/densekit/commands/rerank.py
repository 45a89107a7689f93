"""``densekit rerank``: rescore each query's top hits of a run with a cross-encoder.

The model is a ``densekit train-reranker`` folder or a sentence-transformers ``CrossEncoder``
folder. Pairs are scored in batches sorted by length, a chunk of queries at a time, and the
output run is written as it is scored, under a temporary name renamed when complete. Every
input problem (a missing file, a query or document the run names but the queries or corpus
lack, a bad depth) is found before the model is loaded and is one line with exit code 2.
``--backend onnx|openvino [--quantize int8]`` scores with the model's sequence-classification
graph exported once (cached beside the model, or in ``--export_dir``) and checked against torch
before use; OpenVINO int8 calibrates on a fixed sample of the run's pairs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from densekit.atomic import check_target
from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.data.runs import FORMATS, Run, read_run, write_run
from densekit.errors import ConfigError, DataError
from densekit.precision import PRECISIONS

if TYPE_CHECKING:  # torch, transformers and datasets load in main(), not for --help
    from densekit.modeling.reranker import CrossEncoderReranker
    from densekit.search.corpus import CorpusStore


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("densekit rerank", __doc__)
    add = parser.add_argument
    add("--model", "--model_name_or_path", required=True, help="cross-encoder folder")
    add("--run", required=True, help="first-stage run (TREC, MS MARCO or Tevatron text)")
    add("--corpus", "--corpus_path", required=True, help="corpus the run's docids come from")
    add("--queries", "--query_path", required=True, help="queries the run's qids come from")
    add("--depth", type=int, default=100, help="hits reranked per query")
    add("--save_ranking_to", required=True, help="where the reranked run is written")
    add("--ranking_format", choices=FORMATS, default="trec", help="the output run's form")
    add("--run_tag", default="densekit-rerank", help="the tag column of a TREC output run")
    add("--batch_size", type=int, default=32, help="pairs per forward pass")
    add("--max_len", "--rerank_max_len", type=int, help="max pair tokens (default: the model's)")
    add("--backend", choices=("torch", "onnx", "openvino"), default="torch",
        help="torch (default), or the model exported once to onnx / openvino")  # fmt: skip
    add("--quantize", choices=("int8",), default=None, help="int8 weights (onnx/openvino)")
    add("--export_dir", default=None, help="export cache (default: beside the model)")
    add("--precision", choices=PRECISIONS, default="auto",
        help="torch backend: auto (bf16 autocast where the device does bf16 natively, else "
        "fp32), fp32 or bf16")  # fmt: skip
    return parser


def check_inputs(run: Run, queries: dict[str, str], corpus: CorpusStore, depth: int, paths) -> None:
    """Every query of the run in the queries, every reranked docid in the corpus."""
    run_path, queries_path, corpus_path = paths
    for qid, hits in run.items():
        if qid not in queries:
            raise DataError(queries_path, f"query {qid!r} of run {run_path} is not in the queries")
        for docid in list(hits)[:depth]:
            if docid not in corpus:
                raise DataError(
                    corpus_path, f"document {docid!r} (run {run_path}, query {qid!r}) is not in it"
                )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.depth < 1:
        raise ConfigError(f"--depth must be positive, got {args.depth}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch_size must be positive, got {args.batch_size}")
    if args.max_len is not None and args.max_len < 2:
        raise ConfigError(f"--max_len must be at least 2, got {args.max_len}")
    check_target(args.save_ranking_to, folder=False)
    from densekit.data.readers import load_queries
    from densekit.modeling.reranker import CrossEncoderReranker
    from densekit.search.corpus import CorpusStore

    run = read_run(args.run)
    table = load_queries(args.queries)
    queries = dict(zip(table["query_id"], table["text"], strict=True))
    corpus = CorpusStore.open(args.corpus)
    check_inputs(run, queries, corpus, args.depth, (args.run, args.queries, args.corpus))
    if args.quantize and args.backend == "torch":
        raise ConfigError("--quantize int8 needs --backend onnx or openvino")
    if args.backend == "torch":
        reranker = CrossEncoderReranker.from_pretrained(args.model, max_len=args.max_len)
        reranker.set_precision(args.precision)
    else:
        from densekit.inference.backends.rerank import load_reranker, sample_pairs

        def calibration(model: CrossEncoderReranker) -> list[tuple[str, str]]:
            pairs = [
                (qid, docid) for qid, hits in run.items() for docid in list(hits)[: args.depth]
            ]
            return [
                model.format_pair(queries[qid], *corpus.document(docid))
                for qid, docid in sample_pairs(pairs)
            ]

        reranker = load_reranker(
            args.model,
            args.backend,
            args.quantize,
            args.export_dir,
            calibration_pairs=calibration,
            max_len=args.max_len,
        )
    ranked: Iterator = reranker.rerank_run(
        run.items(), queries, corpus.document, depth=args.depth, batch_size=args.batch_size
    )
    write_run(args.save_ranking_to, ranked, tag=args.run_tag, fmt=args.ranking_format)
    pairs = sum(min(len(hits), args.depth) for hits in run.values())
    print(f"reranked {pairs} pairs of {len(run)} queries -> {args.save_ranking_to}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
