"""``densekit serve``: BM25, dense and hybrid search over HTTP, with a page at ``/``.

``densekit serve <recipe output or searcher folder>`` serves what ``densekit recipe`` left;
``--model --index --corpus`` serve any model over a FAISS index saved by ``densekit index`` /
``search --save_index`` (BM25 built from the corpus unless ``--bm25_index``). ``--reranker`` (or
the searcher folder's own reranker) lets requests ask for ``rerank=true``: each mode's top
``--rerank_depth`` reordered by a cross-encoder. Needs
``pip install 'densekit[serve]'`` (FastAPI + uvicorn).
"""

from __future__ import annotations

import argparse
import os
import sys

from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.errors import ConfigError
from densekit.precision import PRECISIONS

DEFAULT_RERANK_DEPTH, MAX_RERANK_DEPTH = 100, 1000  # as densekit.search.folder (not imported here)


def build_parser() -> argparse.ArgumentParser:
    p = new_parser("densekit serve", __doc__)
    p.add_argument(
        "folder", nargs="?", help="a recipe output (or its searcher/ folder) to serve whole"
    )
    p.add_argument("--model", help="model folder (with --index and --corpus; no folder given)")
    p.add_argument("--index", help="FAISS index folder saved by densekit index / --save_index")
    p.add_argument("--corpus", help="corpus file the index was built from (for titles and texts)")
    p.add_argument("--bm25_index", help="saved BM25 index (default: built from --corpus)")
    p.add_argument(
        "--hybrid_weight", type=float, default=0.5, help="BM25's weight in hybrid (default 0.5)"
    )
    p.add_argument(
        "--backend",
        default="torch",
        help="query encoder backend: torch (default), onnx, openvino, or a registered one",
    )
    p.add_argument("--quantize", choices=("int8",), default=None, help="int8 (onnx/openvino)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "auto"),
        default="fp32",
        help="torch query encoding (default fp32: for one short query bf16 autocast costs more "
        "than it saves)",
    )
    p.add_argument("--export_dir", default=None, help="export cache (default: beside the model)")
    p.add_argument(
        "--reranker",
        default=None,
        help="cross-encoder folder (densekit train-reranker or sentence-transformers "
        "CrossEncoder) for rerank=true requests (default: the searcher folder's, if any)",
    )
    p.add_argument(
        "--rerank_depth",
        type=int,
        default=None,
        help=f"first-stage hits reranked per query (1..{MAX_RERANK_DEPTH}; default: the "
        f"folder's, else {DEFAULT_RERANK_DEPTH})",
    )
    p.add_argument(
        "--reranker_backend",
        choices=("torch", "onnx", "openvino"),
        default="torch",
        help="the reranker's backend (default torch; onnx/openvino export it once, cached)",
    )
    p.add_argument(
        "--reranker_quantize", choices=("int8",), default=None, help="int8 (onnx/openvino)"
    )
    p.add_argument(
        "--reranker_precision",
        choices=PRECISIONS,
        default="auto",
        help="a torch reranker's precision (default auto: bf16 autocast where the CPU computes "
        "bf16 natively; a query's pairs are batch work, where it pays)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="encoder threads (default: every core; at 16 clients on 2 cores that served 1.36x "
        "the queries of one thread, at 1 client each query took ~3 ms longer)",
    )
    p.add_argument(
        "--batch_window_ms",
        type=float,
        default=2.0,
        help="how long concurrent requests are collected into one encoder call (default 2)",
    )
    return p


def _searchers(args: argparse.Namespace):
    from densekit.encoders import EncoderSpec
    from densekit.encoders.registry import check_backend
    from densekit.search.folder import add_reranker, assemble_searchers, load_searchers

    spec = EncoderSpec(
        args.model or "",
        backend=args.backend,
        quantize=args.quantize,
        export_dir=args.export_dir if args.backend != "torch" else None,
        precision=args.precision,
        threads=args.threads,
    )
    if args.folder:
        if args.model or args.index or args.corpus:
            raise ConfigError("give a folder, or --model with --index and --corpus, not both")
        return load_searchers(
            args.folder,
            args.backend,
            args.quantize,
            args.export_dir,
            args.precision,
            args.threads,
            reranker=args.reranker,
            rerank_depth=args.rerank_depth,
            reranker_backend=args.reranker_backend,
            reranker_quantize=args.reranker_quantize,
            reranker_precision=args.reranker_precision,
        )
    if not (args.model and args.index and args.corpus):
        raise ConfigError("give a recipe output folder, or all of --model, --index and --corpus")
    check_backend(spec)
    searchers = assemble_searchers(
        spec, args.index, args.corpus, args.bm25_index, args.hybrid_weight
    )
    if args.reranker:
        add_reranker(
            searchers,
            args.reranker,
            args.rerank_depth or DEFAULT_RERANK_DEPTH,
            args.reranker_backend,
            args.reranker_quantize,
            args.export_dir,
            args.threads,
            args.reranker_precision,
        )
    return searchers


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.hybrid_weight <= 1:
        raise ConfigError(f"--hybrid_weight must lie in [0, 1], got {args.hybrid_weight}")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must lie in 1..65535, got {args.port}")
    if args.batch_window_ms < 0:
        raise ConfigError(f"--batch_window_ms must not be negative, got {args.batch_window_ms}")
    if args.rerank_depth is not None and not 1 <= args.rerank_depth <= MAX_RERANK_DEPTH:
        raise ConfigError(
            f"--rerank_depth must lie in 1..{MAX_RERANK_DEPTH}, got {args.rerank_depth}"
        )
    reranker_flags = args.reranker_backend != "torch" or args.reranker_quantize
    if reranker_flags and args.reranker is None and not args.folder:
        raise ConfigError("--reranker_backend and --reranker_quantize need --reranker")
    if args.reranker_quantize and args.reranker_backend == "torch":
        raise ConfigError("--reranker_quantize int8 needs --reranker_backend onnx or openvino")
    if args.reranker_precision == "bf16" and args.reranker_backend != "torch":
        raise ConfigError("--reranker_precision bf16 is for --reranker_backend torch")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be positive, got {args.threads}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    args.threads = args.threads or max(1, cores or 1)
    # OpenMP threads that sleep between calls leave the cores to the event loop (read by
    # torch's OpenMP when it starts, so before torch is imported)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import uvicorn

        from densekit.serve.app import create_app
    except ImportError as exc:
        raise ConfigError(
            f"densekit serve needs {exc.name}: pip install 'densekit[serve]'"
        ) from None
    searchers = _searchers(args)
    app = create_app(searchers, window=args.batch_window_ms / 1000)
    reranking = (
        f", reranking the top {searchers.rerank_depth} on request"
        if searchers.reranker is not None
        else ""
    )
    print(
        f"densekit serve: {searchers.info['corpus_size']} documents{reranking}, "
        f"http://{args.host}:{args.port}/ (API docs at /docs)",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
