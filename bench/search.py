"""Exact search: densekit's Flat FAISS index vs a NumPy matrix product + argpartition + sort.

Random normalized float32 vectors (inner product = cosine). Both sides search the same
queries in the same batches in the same process, alternating round by round; the script
prints queries/s for each, the ratio densekit/NumPy (higher is better for densekit, target
>= 1.0) and whether both return the same top-10 ids.

    .venv/bin/python bench/search.py                 # 100k x 384 corpus, 1000 queries
    .venv/bin/python bench/search.py --quick         # smoke test
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (sets TQDM_DISABLE before densekit imports tqdm)
import numpy as np
from _common import alternate, header, median, paired_ratio, spread

from densekit.retrieval.index import build_index, search
from densekit.retrieval.search import search_index


def normalized(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def numpy_topk(
    corpus: np.ndarray, queries: np.ndarray, k: int, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by inner product: matmul, argpartition, then sort the k survivors."""
    scores_out = np.empty((len(queries), k), dtype=np.float32)
    ids_out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), batch):
        scores = queries[start : start + batch] @ corpus.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        ids_out[start : start + batch] = np.take_along_axis(part, order, axis=1)
        scores_out[start : start + batch] = np.take_along_axis(top, order, axis=1)
    return scores_out, ids_out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--depth", type=int, default=100)
    p.add_argument(
        "--batch_size", type=int, default=1024, help="query batch, both sides (densekit's default)"
    )
    p.add_argument(
        "--big_batch",
        type=int,
        default=128,
        help="also time densekit search with this smaller query batch (0: skip)",
    )
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="20k docs, 400 queries, 2 rounds")
    args = p.parse_args()
    if args.quick:
        args.docs, args.queries, args.rounds = 20_000, 400, 2
    header("exact search: densekit Flat FAISS vs NumPy", args)

    rng = np.random.default_rng(args.seed)
    corpus = normalized(rng, args.docs, args.dim)
    queries = normalized(rng, args.queries, args.dim)
    doc_ids = [f"d{i}" for i in range(args.docs)]
    query_ids = [f"q{i}" for i in range(args.queries)]

    start = time.perf_counter()
    index = build_index(corpus, "Flat")
    print(f"build_index(Flat) on {args.docs} x {args.dim}: {time.perf_counter() - start:.3f}s")

    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def run_numpy():
        results["numpy"] = numpy_topk(corpus, queries, args.depth, args.batch_size)

    def run_densekit():
        results["densekit"] = search(index, queries, args.depth, args.batch_size)

    def run_search_index():  # what `densekit search` does: + docid mapping and merge_topk
        search_index(query_ids, queries, index, doc_ids, args.depth, args.batch_size)

    def run_big_batch():
        results["big"] = search(index, queries, args.depth, args.big_batch)

    fns = {"numpy": run_numpy, "densekit": run_densekit, "search_index": run_search_index}
    if args.big_batch:
        fns["big_batch"] = run_big_batch
    times = alternate(fns, args.rounds)
    qps = {name: args.queries / median(t) for name, t in times.items()}
    print()
    print(f"{'system':<34} {'median s':>9} {'min..max s':>15} {'queries/s':>10}")
    labels = {
        "numpy": "numpy matmul+argpartition+sort",
        "densekit": "densekit search (FAISS Flat)",
        "search_index": "densekit search_index (+ids)",
        "big_batch": f"densekit search, batch {args.big_batch}",
    }
    for name, t in times.items():
        print(f"{labels[name]:<34} {median(t):9.3f} {spread(t):>15} {qps[name]:10.0f}")
    print(f"ratio densekit/numpy queries/s: {qps['densekit'] / qps['numpy']:.2f} (target >= 1.0)")
    print(f"ratio search_index/numpy queries/s: {qps['search_index'] / qps['numpy']:.2f}")
    print(
        "queries/s ratio densekit/numpy, median of per-round ratios: "
        f"{1 / paired_ratio(times, 'densekit', 'numpy'):.2f}"
    )
    if args.big_batch:
        print(
            f"ratio densekit(batch {args.big_batch})/numpy queries/s: "
            f"{qps['big_batch'] / qps['numpy']:.2f}"
        )

    dk_scores, dk_ids = results["densekit"]
    np_scores, np_ids = results["numpy"]
    same_ordered = np.all(dk_ids[:, :10] == np_ids[:, :10], axis=1)
    same_set = np.array(
        [set(a) == set(b) for a, b in zip(dk_ids[:, :10], np_ids[:, :10], strict=True)]
    )
    diff = float(np.abs(dk_scores - np_scores).max())
    print(
        f"top-10 ids identical (same order): {int(same_ordered.sum())}/{args.queries}; "
        f"same set: {int(same_set.sum())}/{args.queries}; max |score diff| top-{args.depth}: "
        f"{diff:.2e}"
    )
    if args.big_batch:
        same_big = int(np.all(results["big"][1][:, :10] == dk_ids[:, :10], axis=1).sum())
        print(f"batch {args.big_batch} vs batch {args.batch_size} top-10 identical: {same_big}")
    if not same_set.all():
        raise SystemExit("top-10 id sets differ between densekit and NumPy")


if __name__ == "__main__":
    main()
