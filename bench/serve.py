"""Serving: per-query latency in-process and HTTP throughput of `densekit serve`, against
sentence-transformers' encode + semantic_search, everything in one run.

Data: the full SciFact corpus (5,183 passages) in a searcher folder written with densekit's own
library (torch fp32 passage vectors, FAISS Flat, BM25), cached under ``--work_dir`` with the
backend exports; the first ``--queries`` SciFact queries; top ``--k`` hits.

  1. Per-query latency (encode + dense search, one query at a time, in-process, after
     ``--warmup`` queries): densekit's ``DenseSearcher`` (the dense searcher of
     ``load_searchers(folder, backend, quantize)``, as the server builds it) on torch fp32,
     onnx fp32, onnx int8 and openvino int8, and ``SentenceTransformer(model).encode`` +
     ``sentence_transformers.util.semantic_search`` over the same corpus vectors. Query by query,
     every variant runs in turn (order rotated per query), so load hits them alike.
  2. The in-process batched loop (all queries in one call), ``--rounds`` alternating rounds:
     densekit ``DenseSearcher.batch_search`` / ``HybridSearcher.batch_search`` on the best backend
     (lowest p50 in 1) and ST's ``encode(all)`` + ``semantic_search``.
  3. HTTP: a real ``densekit serve`` subprocess on 127.0.0.1 with the best backend;
     ``--requests`` GET /search requests per level from 1, 4, 16 httpx clients in threads (this
     process), modes dense and hybrid; zero errors asserted.

Targets: p50 <= 10 ms per query with the best backend; HTTP queries/s at 16 clients >= 0.8x
the in-process batched loop.

    .venv/bin/python bench/serve.py                              # 200 queries, 800 requests
    .venv/bin/python bench/serve.py --queries 20 --requests 50   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import _common  # environment first
import numpy as np
import torch
from _common import DATA, alternate, header, median, model_path, spread

VARIANTS = {  # name: (backend, quantize)
    "torch fp32": ("torch", None),
    "onnx fp32": ("onnx", None),
    "onnx int8": ("onnx", "int8"),
    "openvino int8": ("openvino", "int8"),
}
ST = "sentence-transformers"


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text()
    flags = text.split("flags", 1)[1].split("\n")[0].split(":", 1)[1].split()
    wanted = [f for f in flags if f in ("avx2", "avx_vnni") or f.startswith(("avx512", "amx"))]
    return f"{' '.join(wanted) or 'none'} (torch cpu capability: " + (
        f"{torch.backends.cpu.get_cpu_capability()})"
    )


def build_folder(work: Path, model: str, calibration_size: int) -> Path:
    """The searcher folder over the whole corpus (reused when there), and the int8 OpenVINO
    export calibrated on a sample of passages (the server and load_searchers then reuse it)."""
    import faiss

    from densekit.data.readers import load_corpus
    from densekit.encoders import EncoderSpec, load_encoder
    from densekit.encoders.interface import Calibration
    from densekit.inference.backends import sample_rows
    from densekit.retrieval.bm25 import BM25Index
    from densekit.search.folder import write_searcher_folder

    folder = work / "searcher"
    corpus = load_corpus(DATA / "corpus.jsonl")
    if not (folder / "searcher.json").is_file():
        start = time.perf_counter()
        encoder = load_encoder(EncoderSpec(model))
        vectors = encoder.encode_passages(list(corpus["text"]), list(corpus["title"]))
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        encode_s = time.perf_counter() - start
        bm25 = BM25Index.build(corpus)
        write_searcher_folder(
            folder, model, DATA / "corpus.jsonl", (list(corpus["docid"]), index), bm25, 0.5, 100
        )
        print(f"built {folder}: {len(corpus)} passages encoded (torch fp32) in {encode_s:.0f} s")
    else:
        print(f"reusing {folder}")
    rows = sample_rows(len(corpus), calibration_size, seed=0)
    sample = corpus.select(rows)
    start = time.perf_counter()
    load_encoder(
        EncoderSpec(
            model,
            backend="openvino",
            quantize="int8",
            export_dir=str(work / "exports"),
            calibration=Calibration(list(sample["text"]), list(sample["title"])),
        )
    )
    print(f"openvino int8 export ready ({time.perf_counter() - start:.1f} s)")
    return folder


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, work: Path, backend: str, quantize: str | None, port: int):
    cmd = [sys.executable, "-m", "densekit", "serve", str(folder), "--port", str(port),
           "--backend", backend]  # fmt: skip
    if backend != "torch":
        cmd += ["--export_dir", str(work / "exports")]
    if quantize:
        cmd += ["--quantize", quantize]
    log = open(work / "server.log", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"densekit serve exited ({proc.returncode}); see {work / 'server.log'}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, log
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("densekit serve did not answer /health within 300 s")


def http_level(port: int, queries: list[str], mode: str, k: int, clients: int, requests: int):
    """``requests`` GET /search from ``clients`` threads: queries/s, latencies, errors."""
    import httpx

    lock = threading.Lock()
    state = {"next": 0, "limit": requests, "errors": 0, "first_error": None}
    latencies: list[float] = []
    url = f"http://127.0.0.1:{port}/search"

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    i = state["next"]
                    if i >= state["limit"]:
                        return
                    state["next"] += 1
                params = {"q": queries[i % len(queries)], "k": k, "mode": mode}
                start = time.perf_counter()
                try:
                    reply = http.get(url, params=params)
                    ok = reply.status_code == 200 and len(reply.json()["hits"]) == k
                    why = f"HTTP {reply.status_code}: {reply.text[:200]}"
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    ok, why = False, repr(exc)
                took = time.perf_counter() - start
                with lock:
                    latencies.append(took)
                    if not ok:
                        state["errors"] += 1
                        state["first_error"] = state["first_error"] or why

    def run(n: int) -> float:
        state["next"], state["limit"] = 0, n
        threads = [threading.Thread(target=client) for _ in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start

    run(min(requests, 4 * clients))  # warm-up: connections, the server's first batches
    latencies.clear()
    wall = run(requests)
    p50, p99 = percentiles(latencies)
    return {
        "clients": clients,
        "requests": requests,
        "seconds": wall,
        "qps": requests / wall,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": state["errors"],
        "first_error": state["first_error"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work_dir", default="/tmp/densekit-bench-serve", help="cache: folder+exports")
    p.add_argument("--queries", type=int, default=200, help="SciFact queries (the first N)")
    p.add_argument("--requests", type=int, default=800, help="HTTP requests per level")
    p.add_argument("--clients", default="1,4,16", help="HTTP concurrency levels")
    p.add_argument("--modes", default="dense,hybrid", help="HTTP modes")
    p.add_argument("--variants", default=",".join(VARIANTS), help="densekit backends timed")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--warmup", type=int, default=10, help="untimed queries per variant")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the batched loop")
    p.add_argument("--calibration", type=int, default=300, help="passages openvino int8 sees")
    p.add_argument("--output", default=None, help="write the results as JSON here")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    header("serving: densekit in-process and over HTTP vs sentence-transformers", args)
    print(f"cpu flags : {cpu_flags()}")
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    model = model_path()

    import faiss
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import semantic_search

    from densekit.data.readers import load_queries
    from densekit.search.folder import load_searchers

    folder = build_folder(work, model, args.calibration)
    table = load_queries(DATA / "queries.jsonl")
    queries = list(table["text"])[: args.queries]
    print(f"data      : {len(queries)} queries, k={args.k}")

    # ---- 1. per-query latency, all variants query by query
    variants = [v for v in args.variants.split(",") if v]
    searchers = {}
    for name in variants:
        start = time.perf_counter()
        backend, quantize = VARIANTS[name]
        exports = None if backend == "torch" else str(work / "exports")  # torch refuses one
        searchers[name] = load_searchers(folder, backend, quantize, exports)
        print(f"loaded {name} in {time.perf_counter() - start:.1f} s")
    dense0 = searchers[variants[0]].get("dense")
    index = dense0.index
    doc_ids = dense0.doc_ids
    corpus_vectors = torch.from_numpy(index.reconstruct_n(0, index.ntotal))  # the same vectors
    st_model = SentenceTransformer(model, device="cpu")
    print(f"threads   : torch {torch.get_num_threads()}, faiss {faiss.omp_get_max_threads()}")

    def st_search(texts: list[str]):
        vectors = st_model.encode(texts, convert_to_tensor=True)
        return semantic_search(vectors, corpus_vectors, top_k=args.k)

    def dk_one(name: str, text: str):
        return searchers[name].get("dense").batch_rank([text], ["0"], args.k)["0"]

    calls = {name: (lambda t, n=name: dk_one(n, t)) for name in variants}
    calls[ST] = lambda t: st_search([t])[0]
    names = list(calls)
    for text in queries[: args.warmup]:
        for name in names:
            calls[name](text)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    tops: dict[str, list[str]] = {name: [] for name in names}
    for i, text in enumerate(queries):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            result = calls[name](text)
            seconds[name].append(time.perf_counter() - start)
            top = next(iter(result)) if name != ST else doc_ids[result[0]["corpus_id"]]
            tops[name].append(top)
    latency = {}
    for name, values in seconds.items():
        p50, p99 = percentiles(values)
        latency[name] = {"p50_ms": p50, "p99_ms": p99}
    best = min(variants, key=lambda n: latency[n]["p50_ms"])
    print(f"\nbest densekit backend by p50: {best}")

    # ---- 2. the in-process batched loop
    best_searchers = searchers[best]
    qids = [str(i) for i in range(len(queries))]
    batched = {
        "densekit dense batch_search": lambda: best_searchers.get("dense").batch_search(
            queries, qids, args.k
        ),
        "densekit hybrid batch_search": lambda: best_searchers.get("hybrid").batch_search(
            queries, qids, args.k
        ),
        "ST encode+semantic_search": lambda: st_search(queries),
    }
    times = alternate(batched, args.rounds, warmup=1)
    batched_qps = {name: len(queries) / median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"  {name:<30} median {median(t):.3f} s ({spread(t)}) {batched_qps[name]:.1f} q/s")
    searchers.clear()  # free the other in-process encoders before the server starts

    # ---- 3. HTTP against a densekit serve subprocess
    port = free_port()
    backend, quantize = VARIANTS[best]
    start = time.perf_counter()
    proc, log = start_server(folder, work, backend, quantize, port)
    print(f"densekit serve ({best}) up on port {port} in {time.perf_counter() - start:.1f} s")
    http: dict[str, list[dict]] = {}
    try:
        for mode in args.modes.split(","):
            http[mode] = []
            for clients in [int(c) for c in args.clients.split(",")]:
                level = http_level(port, queries, mode, args.k, clients, args.requests)
                http[mode].append(level)
                print(f"  {mode:<6} {clients:>2} clients: {level['qps']:7.1f} q/s, p50 "
                      f"{level['p50_ms']:.1f} ms, p99 {level['p99_ms']:.1f} ms, "
                      f"errors {level['errors']}", flush=True)  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    # ---- report
    print()
    print(f"{'per query, in-process':<30} {'p50 ms':>8} {'p99 ms':>8} {'top-1 = ST':>11}")
    for name in names:
        same = sum(a == b for a, b in zip(tops[name], tops[ST], strict=True))
        print(f"{name:<30} {latency[name]['p50_ms']:8.2f} {latency[name]['p99_ms']:8.2f} "
              f"{same:>5}/{len(queries)}")  # fmt: skip
    print()
    print(f"{'batched, in-process':<30} {'queries/s':>10}")
    for name, qps in batched_qps.items():
        print(f"{name:<30} {qps:10.1f}")
    print()
    print(f"{'HTTP (' + best + ')':<30} {'clients':>7} {'queries/s':>10} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'errors':>6}")  # fmt: skip
    for mode, levels in http.items():
        for level in levels:
            print(f"{mode:<30} {level['clients']:>7} {level['qps']:10.1f} {level['p50_ms']:8.1f} "
                  f"{level['p99_ms']:8.1f} {level['errors']:>6}")  # fmt: skip
    print()
    p50 = latency[best]["p50_ms"]
    print(f"target p50 <= 10 ms ({best}): {p50:.2f} ms -> {'met' if p50 <= 10 else 'NOT met'}")
    ratios = {}
    for mode, levels in http.items():
        top = max(levels, key=lambda lv: lv["clients"])
        own = batched_qps[f"densekit {mode} batch_search"]
        st = batched_qps["ST encode+semantic_search"]
        ratios[mode] = {"vs_densekit_batched": top["qps"] / own, "vs_st_batched": top["qps"] / st}
        verdict = "met" if top["qps"] >= 0.8 * own else "NOT met"
        print(f"target HTTP {mode} @ {top['clients']} clients >= 0.8x in-process batched: "
              f"{top['qps']:.1f} q/s = {top['qps'] / own:.2f}x densekit {mode} batch_search "
              f"({own:.1f} q/s) -> {verdict}; {top['qps'] / st:.2f}x ST's batched loop "
              f"({st:.1f} q/s)")  # fmt: skip
    errors = sum(level["errors"] for levels in http.values() for level in levels)
    if args.output:
        result = {
            "arguments": vars(args),
            "cpu": _common.cpu_model(),
            "cpu_flags": cpu_flags(),
            "best_backend": best,
            "latency": latency,
            "batched_qps": batched_qps,
            "http": http,
            "http_vs_batched": ratios,
        }
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    if errors:
        first = next(lv["first_error"] for lvs in http.values() for lv in lvs if lv["errors"])
        raise SystemExit(f"{errors} HTTP errors (first: {first})")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
