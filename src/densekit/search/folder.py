"""A searcher folder: everything needed to search a corpus, written by the recipe.

``searcher.json`` names the model (relative to the folder when it lies beside it), the
encoder settings the index was built with, the corpus file, the FAISS index (``dense/``), the
BM25 index (``bm25/``), the dev-tuned hybrid weight, when there is one, the dev split's
queries and qrels (``dev_queries.jsonl``, ``dev_qrels.tsv``) for looking at judged results, and
optionally a cross-encoder ``reranker`` (relative like the model) with its ``rerank_depth``.
:func:`load_searchers` opens all of it; :func:`load_searcher` returns one searcher by mode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import faiss

from densekit.atomic import WRITER, atomic_path
from densekit.data.qrels import load_qrels
from densekit.data.readers import load_queries
from densekit.encoders import EncoderSpec, TextEncoder, load_encoder
from densekit.errors import ConfigError, DataError
from densekit.retrieval.bm25 import BM25Index
from densekit.retrieval.index import save_index
from densekit.search.bm25 import BM25Searcher
from densekit.search.corpus import CorpusStore
from densekit.search.dense import DenseSearcher
from densekit.search.hits import RankingSearcher
from densekit.search.hybrid import HybridSearcher
from densekit.search.rerank import RerankingSearcher

if TYPE_CHECKING:
    from densekit.modeling.reranker import CrossEncoderReranker

Qrels = dict[str, dict[str, int]]
MANIFEST = "searcher.json"
MODES = ("bm25", "dense", "hybrid")
_DEV_QUERIES, _DEV_QRELS = "dev_queries.jsonl", "dev_qrels.tsv"
DEFAULT_RERANK_DEPTH = 100
MAX_RERANK_DEPTH = 1000


@dataclass
class Searchers:
    """The searchers of one folder (BM25, dense, hybrid) over one corpus, and what they came from;
    with a reranker, also each mode's first stage reranked (:meth:`reranked`)."""

    corpus: CorpusStore
    encoder: TextEncoder
    by_mode: dict[str, RankingSearcher]
    info: dict[str, Any]
    dev_queries: dict[str, str] = field(default_factory=dict)
    dev_qrels: Qrels = field(default_factory=dict)
    reranker: CrossEncoderReranker | None = None
    rerank_depth: int | None = None
    reranking: dict[str, RerankingSearcher] = field(default_factory=dict)

    def get(self, mode: str) -> RankingSearcher:
        if mode not in self.by_mode:
            raise ConfigError(f"unknown mode {mode!r}; expected one of {', '.join(self.by_mode)}")
        return self.by_mode[mode]

    def add_reranker(
        self,
        reranker: CrossEncoderReranker,
        depth: int = DEFAULT_RERANK_DEPTH,
        name: str | None = None,
        backend: str = "torch",
        precision: str | None = None,
    ) -> None:
        """Add, for every mode, ``RerankingSearcher(mode's searcher, reranker, depth)``;
        ``precision`` is what a torch reranker scores in (reported by ``/info``)."""
        check_rerank_depth(depth)
        self.reranker, self.rerank_depth = reranker, int(depth)
        self.reranking = {
            mode: RerankingSearcher(searcher, reranker, int(depth), self.corpus)
            for mode, searcher in self.by_mode.items()
        }
        self.info.update(
            reranker=name,
            reranker_backend=backend,
            reranker_precision=precision,
            rerank_depth=int(depth),
        )

    def reranked(self, mode: str) -> RerankingSearcher:
        """The ``mode`` searcher's top ``rerank_depth`` reranked by the cross-encoder."""
        self.get(mode)
        if self.reranker is None:
            raise ConfigError("no reranker is loaded (give the searcher folder one, or --reranker)")
        return self.reranking[mode]


def check_rerank_depth(depth: int) -> None:
    if not isinstance(depth, int) or not 1 <= depth <= MAX_RERANK_DEPTH:
        raise ConfigError(f"the rerank depth must lie in 1..{MAX_RERANK_DEPTH}, got {depth!r}")


def _relative(target: Path, folder: Path) -> str:
    """``target`` relative to ``folder`` when it lies beside it (the folder then moves with its
    model), else absolute."""
    try:
        return os.path.relpath(target.resolve(), folder.resolve())
    except ValueError:  # another drive (Windows)
        return str(target.resolve())


def write_searcher_folder(
    folder: str | os.PathLike,
    model: str | os.PathLike,
    corpus_path: str | os.PathLike,
    dense: tuple[list[str], faiss.Index],
    bm25: BM25Index,
    hybrid_weight: float,
    depth: int,
    encoder_settings: Mapping[str, Any] | None = None,
    dev: tuple[datasets.Dataset, Qrels] | None = None,
    overwrite: bool = False,
    reranker: str | os.PathLike | None = None,
    rerank_depth: int | None = None,
) -> Path:
    """Write a searcher folder (atomically: it appears only when complete). ``reranker`` names a
    cross-encoder folder (kept relative when it lies beside the folder, like the model)."""
    folder = Path(folder)
    with atomic_path(folder, folder=True, overwrite=overwrite) as tmp:
        tmp.mkdir()
        save_index(dense[1], dense[0], tmp / "dense")
        bm25.save(tmp / "bm25")
        manifest: dict[str, Any] = {
            "writer": WRITER,
            "kind": "searcher",
            "model": _relative(Path(model), folder),
            "encoder_settings": dict(encoder_settings or {}),
            "corpus": str(Path(corpus_path).resolve()),
            "dense_index": "dense",
            "bm25_index": "bm25",
            "hybrid": {"bm25_weight": float(hybrid_weight), "depth": int(depth)},
        }
        if reranker is not None:
            manifest["reranker"] = _relative(Path(reranker), folder)
        if rerank_depth is not None:
            check_rerank_depth(rerank_depth)
            manifest["rerank_depth"] = int(rerank_depth)
        if dev is not None:
            queries, qrels = dev
            with open(tmp / _DEV_QUERIES, "w", encoding="utf-8") as handle:
                for qid, text in zip(queries["query_id"], queries["text"], strict=True):
                    handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
            with open(tmp / _DEV_QRELS, "w", encoding="utf-8") as handle:
                handle.write("query-id\tcorpus-id\tscore\n")
                for qid, docs in qrels.items():
                    handle.writelines(f"{qid}\t{docid}\t{grade}\n" for docid, grade in docs.items())
            manifest["dev"] = {"queries": _DEV_QUERIES, "qrels": _DEV_QRELS}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return folder


def find_manifest(path: str | os.PathLike) -> Path:
    """The searcher folder of ``path``: itself, or a recipe output's ``searcher/``."""
    folder = Path(path)
    for candidate in (folder, folder / "searcher"):
        if (candidate / MANIFEST).is_file():
            return candidate
    raise ConfigError(
        f"{folder} is not a searcher folder: no {MANIFEST} there or in {folder / 'searcher'} "
        "(run densekit recipe to make one, or pass --model, --index and --corpus)"
    )


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(str(folder / MANIFEST), f"unreadable ({exc})") from None
    for key in ("model", "corpus", "dense_index", "bm25_index", "hybrid"):
        if key not in manifest:
            raise DataError(str(folder / MANIFEST), f"missing the {key!r} entry")
    return manifest


def assemble_searchers(
    spec: EncoderSpec,
    index_folder: str | os.PathLike,
    corpus_path: str | os.PathLike,
    bm25_folder: str | os.PathLike | None = None,
    hybrid_weight: float = 0.5,
    depth: int = 100,
) -> Searchers:
    """BM25, dense and hybrid searchers over one corpus: the dense one with ``spec``'s encoder
    over a saved FAISS index, BM25 from a saved index or built from the corpus."""
    corpus = CorpusStore.open(corpus_path)
    encoder = load_encoder(spec)
    dense = DenseSearcher.from_index(encoder, index_folder, corpus)
    if bm25_folder is not None:
        bm25 = BM25Searcher.from_index(bm25_folder, corpus)
    else:
        bm25 = BM25Searcher.from_corpus(corpus)
    hybrid = HybridSearcher(bm25, dense, hybrid_weight, depth)
    info = {
        "model": spec.model,
        "backend": encoder.backend,
        "corpus": str(corpus_path),
        "corpus_size": len(corpus),
        "dimension": dense.dim,
        "hybrid_weight": hybrid_weight,
        "hybrid_depth": depth,
        "reranker": None,
        "reranker_backend": None,
        "reranker_precision": None,
        "rerank_depth": None,
    }
    return Searchers(corpus, encoder, {"bm25": bm25, "dense": dense, "hybrid": hybrid}, info)


def load_searchers(
    path: str | os.PathLike,
    backend: str = "torch",
    quantize: str | None = None,
    export_dir: str | None = None,
    precision: str = "fp32",
    threads: int | None = None,
    reranker: str | os.PathLike | None = None,
    rerank_depth: int | None = None,
    reranker_backend: str = "torch",
    reranker_quantize: str | None = None,
    reranker_precision: str = "auto",
) -> Searchers:
    """Every searcher of a searcher folder (or of a recipe output holding ``searcher/``).

    Queries are encoded in fp32 by default: one short query at a time, bf16 autocast costs more
    (casting the weights on every call) than it saves. ``reranker`` (default: the folder's own,
    if it names one) adds each mode reranked to ``rerank_depth`` (default: the folder's, or 100),
    scored under bf16 autocast where ``reranker_precision`` resolves to bf16: a query's 100
    pairs are batch work, where bf16 scored 2.39x faster (docs/benchmarks.md §32).
    """
    folder = find_manifest(path)
    manifest = _read_manifest(folder)
    spec = EncoderSpec(
        str((folder / manifest["model"]).resolve()),
        backend=backend,
        quantize=quantize,
        # the export cache serves the reranker's export too: a torch encoder ignores it
        export_dir=export_dir if backend != "torch" else None,
        precision=precision,
        threads=threads,
        overrides=dict(manifest.get("encoder_settings", {})),
    )
    hybrid = manifest["hybrid"]
    searchers = assemble_searchers(
        spec,
        folder / manifest["dense_index"],
        manifest["corpus"],
        folder / manifest["bm25_index"],
        hybrid["bm25_weight"],
        hybrid["depth"],
    )
    dev = manifest.get("dev")
    if dev:
        queries = load_queries(folder / dev["queries"])
        searchers.dev_queries = dict(zip(queries["query_id"], queries["text"], strict=True))
        searchers.dev_qrels = load_qrels(folder / dev["qrels"])
    if reranker is None and manifest.get("reranker"):
        reranker = (folder / manifest["reranker"]).resolve()
    if reranker is not None:
        depth = rerank_depth or manifest.get("rerank_depth") or DEFAULT_RERANK_DEPTH
        add_reranker(
            searchers,
            reranker,
            depth,
            reranker_backend,
            reranker_quantize,
            export_dir,
            threads,
            reranker_precision,
        )
    elif reranker_backend != "torch" or reranker_quantize:
        raise ConfigError("a reranker backend or quantization needs a reranker")
    return searchers


def add_reranker(
    searchers: Searchers,
    path: str | os.PathLike,
    depth: int = DEFAULT_RERANK_DEPTH,
    backend: str = "torch",
    quantize: str | None = None,
    export_dir: str | None = None,
    threads: int | None = None,
    precision: str = "auto",
) -> Searchers:
    """Load the cross-encoder folder ``path`` (on ``backend``) into ``searchers``; a torch
    reranker scores in ``precision`` (an exported one in its export's own)."""
    from densekit.inference.backends.rerank import load_reranker

    check_rerank_depth(depth)
    reranker = load_reranker(path, backend, quantize, export_dir, threads)
    used = reranker.set_precision(precision) if backend == "torch" else None
    searchers.add_reranker(reranker, depth, str(path), reranker.backend, used)
    return searchers


def load_searcher(
    path: str | os.PathLike,
    mode: str = "hybrid",
    backend: str = "torch",
    quantize: str | None = None,
) -> RankingSearcher:
    """The ``mode`` searcher (``hybrid`` by default, with the dev-tuned weight) of a folder."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return load_searchers(path, backend, quantize).get(mode)
