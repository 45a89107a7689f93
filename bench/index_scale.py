"""How index build, search speed and recall grow with the corpus: Flat vs HNSW vs IVF-PQ.

Synthetic unit vectors of low intrinsic dimension, as text embeddings are: a random linear map of
a 32-dimensional standard normal into ``--dim`` dimensions, plus a little isotropic noise, then
normalised (queries drawn the same way). Unlike well-separated clusters, their neighbourhoods
are continuous, so approximate indexes have to work for their recall. They are written, chunk by
chunk, into a densekit embedding folder (memory-mapped), and each index is built from it with
densekit's ``--index_preset`` plan (``build_planned``), searched for ``--queries`` sampled queries
at depth 100 (densekit's ``search``, FAISS batches of ``--batch_size``), and scored against the
Flat result: recall@100 = |top-100 ∩ Flat top-100| / 100, averaged over queries. The base is the
exact Flat search itself (recall 1 by definition); the ratio column is queries/s over Flat's.

Index size is the size of the FAISS file written (what the index holds in memory). Every index
is built, measured and freed before the next, so peak memory is one index plus one chunk.

    .venv/bin/python bench/index_scale.py --sizes 100000 1000000 3000000
    .venv/bin/python bench/index_scale.py --sizes 1000000 --sweep_size 1000000  # + search params
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (environment first)
import faiss
import numpy as np
from _common import header

from densekit.retrieval.embeddings import load_embeddings, stream_embeddings
from densekit.retrieval.index import (
    build_planned,
    merge_search_params,
    plan_index,
    search,
    set_search_params,
)

INTRINSIC = 32
NOISE = 0.3
CHUNK = 100_000


def low_rank(rng: np.random.Generator, basis: np.ndarray, rows: int) -> np.ndarray:
    """Unit vectors ``normalise(z @ basis + noise)``, z standard normal in 32 dimensions."""
    dim = basis.shape[1]
    out = rng.standard_normal((rows, INTRINSIC), dtype=np.float32) @ basis
    out += NOISE / np.sqrt(dim) * rng.standard_normal((rows, dim), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def write_corpus(folder: Path, count: int, dim: int, seed: int) -> np.ndarray:
    """The corpus into ``folder`` (densekit's format, streamed); returns the query vectors."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((INTRINSIC, dim), dtype=np.float32) / np.sqrt(INTRINSIC)
    with stream_embeddings(folder, count, {"synthetic": True}) as writer:
        for start in range(0, count, CHUNK):
            rows = min(CHUNK, count - start)
            ids = [f"d{i}" for i in range(start, start + rows)]
            writer.append(ids, low_rank(rng, basis, rows))
    return low_rank(rng, basis, 10_000)


def file_mib(index: faiss.Index, folder: Path) -> float:
    path = folder / "index.faiss"
    faiss.write_index(index, str(path))
    size = path.stat().st_size / 2**20
    path.unlink()
    return size


def timed_search(index, queries, depth: int, batch: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    _, rows = search(index, queries, depth, batch, progress=False)
    return time.perf_counter() - start, rows


def recall(rows: np.ndarray, exact: np.ndarray) -> float:
    hits = [
        len(set(a.tolist()) & set(b.tolist())) / exact.shape[1]
        for a, b in zip(rows, exact, strict=True)
    ]
    return float(np.mean(hits))


SWEEPS = {
    "hnsw": [f"efSearch={value}" for value in (64, 128, 256, 512)],
    "ivfpq": [f"nprobe={value}" for value in (16, 32, 64, 128, 256, 512)],
    "ivfpq_refine": [f"nprobe={value}" for value in (16, 32, 64, 128, 256, 512)]
    + [f"k_factor_rf={value}" for value in (1, 2, 8, 16)],
}


def sweep(index, name: str, preset_params: str, queries, exact, depth: int, batch: int) -> None:
    """Recall@100 and queries/s for each value of the index's search parameters, one at a time
    (the others at the preset's values)."""
    for params in SWEEPS[name]:
        set_search_params(index, merge_search_params(preset_params, params))
        seconds, rows = timed_search(index, queries, depth, batch)
        print(
            f"  sweep {name} {params}: {len(queries) / seconds:,.0f} queries/s, "
            f"recall@{depth} {recall(rows, exact):.4f}",
            flush=True,
        )
    set_search_params(index, preset_params)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 3_000_000])
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--batch_size", type=int, default=1000)
    p.add_argument("--indexes", default="flat,hnsw,ivfpq,ivfpq_refine")
    p.add_argument("--sweep_size", type=int, default=0, help="sweep nprobe/efSearch at this size")
    p.add_argument("--workdir", default=None, help="default: a temporary folder, removed after")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    header("index build / search / recall vs corpus size (synthetic low-rank vectors)", args)
    print(f"faiss {faiss.__version__}, omp threads {faiss.omp_get_max_threads()}")
    table = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp_name:
        tmp = Path(tmp_name)
        for size in args.sizes:
            start = time.perf_counter()
            queries = write_corpus(tmp / f"c{size}", size, args.dim, args.seed)[: args.queries]
            print(f"{size:,} x {args.dim}: written in {time.perf_counter() - start:.0f}s")
            _, corpus = load_embeddings(tmp / f"c{size}")
            exact = None
            for name in args.indexes.split(","):
                plan = plan_index(name, size, args.dim)
                start = time.perf_counter()
                index = build_planned(corpus, name)
                build = time.perf_counter() - start
                seconds, rows = timed_search(index, queries, args.depth, args.batch_size)
                if exact is None:
                    exact, flat_qps = rows, len(queries) / seconds
                qps = len(queries) / seconds
                row = (size, name, plan.factory, plan.search_params or "-", build, qps,
                       qps / flat_qps, recall(rows, exact), file_mib(index, tmp))  # fmt: skip
                table.append(row)
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                print(
                    f"  {name:<6} {plan.factory:<18} build {build:7.1f}s, {qps:9,.0f} queries/s,"
                    f" recall@{args.depth} {row[7]:.4f}, {row[8]:8,.0f} MiB, peak RSS {peak:.1f}"
                    " GiB",
                    flush=True,
                )
                if size == args.sweep_size and name != "flat":
                    sweep(index, name, plan.search_params, queries, exact, args.depth,
                          args.batch_size)  # fmt: skip
                del index
            del corpus
            os.system(f"rm -rf {tmp / f'c{size}'}")
    print()
    print("| vectors | index | factory | search params | build s | queries/s | x Flat q/s "
          f"| recall@{args.depth} vs Flat | index MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for size, name, factory, params, build, qps, ratio, rec, mib in table:
        print(
            f"| {size:,} | {name} | `{factory}` | {params} | {build:.1f} | {qps:,.0f} | "
            f"{ratio:.1f} | {rec:.4f} | {mib:,.0f} |"
        )


if __name__ == "__main__":
    main()
