"""Cross-encoder reranking on CPU: densekit's reranker on torch / ONNX Runtime / OpenVINO (fp32,
int8) against sentence-transformers' ``CrossEncoder.predict``, same pairs, same run; then the
nDCG@10 of each variant's reranked run.

No pretrained cross-encoder is available offline, so one is built from the bundled
all-MiniLM-L6-v2 and cached in ``--work_dir`` (default /tmp/densekit-bench-rerank):

  densekit bm25 --qrels qrels/train-split.tsv --depth 100      (the 609 training queries)
  densekit mine --negative_number 15                            -> train.jsonl
  densekit train-reranker --train_group_size 4 --max_len 128 --max_steps 80 --precision fp32

(the time it took is in ``train.json`` and the output). Its max length (``--max_len``) is the
pairs' max length everywhere below. Pairs: the BM25 top ``--depth`` of the first ``--queries``
queries of qrels/dev.tsv (disjoint from the training queries), ``title + " " + text`` passages.
Variants (batch ``--batch_size``, ``--threads`` threads everywhere):

  dk-torch      densekit CrossEncoderReranker.logits on torch, fp32 (the reference)
  dk-onnx       load_reranker(backend="onnx"), fp32
  dk-onnx-int8  load_reranker(backend="onnx", quantize="int8") (dynamic int8)
  dk-ov         load_reranker(backend="openvino"), fp32
  dk-ov-int8    load_reranker(backend="openvino", quantize="int8") (NNCF, calibrated on
                ``--calibration`` pairs of the *training* queries' BM25 run)
  dk-...-paircall   any dk variant tokenising with the tokenizer's own pair call (every passage
                whole, per pair) instead of densekit's PairTokenizer: the tokenising's share
  dk-...-whole  any dk variant scoring (and exporting) the whole classifier instead of the last
                layer for the first token only (load_reranker(first_token=False)): that path's
                share; its exports go to ``--work_dir``/exports-whole
  st-torch      sentence_transformers.CrossEncoder(folder).predict, fp32
  st-onnx       CrossEncoder(folder, backend="onnx")     } only where optimum is installed; in
  st-ov         CrossEncoder(folder, backend="openvino") } densekit's .venv it is not (see end)
  st-onnx-q8    ST's export_dynamic_quantized_onnx_model(model, "avx512_vnni" where the CPU has
                it, else "avx2"), loaded with backend="onnx"
  st-ov-q8      ST's export_static_quantized_openvino_model(model, OVQuantizationConfig(), ...)
                calibrated on the same training-query pairs as dk-ov-int8, backend="openvino"
                (ST's quantised exports go to a copy of the folder in ``--work_dir``)

Throughput: every variant scores all pairs ``--rounds`` times, rounds alternating the variants
(order rotated each round), median seconds per round. Quality: each variant's scores of the
first round rerank the BM25 lists; nDCG@10 against qrels/dev.tsv, delta to dk-torch.

    .venv/bin/python bench/rerank.py --output /tmp/rerank.json
    .venv/bin/python bench/rerank.py --quick      # 8 queries x 10 pairs, 1 round

With ST's ONNX and OpenVINO backends too (optimum pins transformers < 4.58, which densekit's
floor allows): run the whole bench in ``.venv-st`` with densekit installed there
(docs/benchmarks.md §26):

    bash bench/setup_st_backends.sh && .venv-st/bin/python -m pip install -e ".[onnx,openvino]"
    .venv-st/bin/python bench/rerank.py --queries 50 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (environment first)
import numpy as np
import torch
from _common import DATA, DENSEKIT_VARIANTS, ROOT, alternate, header, median, model_path, spread

from densekit.data.qrels import load_qrels
from densekit.data.readers import load_corpus, load_queries
from densekit.data.runs import read_run
from densekit.evaluation.metrics import evaluate
from densekit.inference.backends.rerank import load_reranker, sample_pairs

DK = DENSEKIT_VARIANTS
ST = {
    "st-torch": "torch",
    "st-onnx": "onnx",
    "st-onnx-q8": "onnx",
    "st-ov": "openvino",
    "st-ov-q8": "openvino",
}
PAIR_CALL = "-paircall"
WHOLE = "-whole"
WANTED_FLAGS = ("avx2", "avx512", "amx", "avx_vnni")


def cpu_flags() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n")[0].split()
    kept = [f for f in flags if f.startswith(WANTED_FLAGS)]
    return " ".join(kept) + f" (torch: {torch.backends.cpu.get_cpu_capability()})"


def densekit_cli(*args: str) -> None:
    cmd = [str(ROOT / ".venv" / "bin" / "densekit"), *args]
    print("  $ densekit " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build_reranker(work: Path, args) -> tuple[Path, dict]:
    """The fine-tuned MiniLM cross-encoder (cached) and how it was made."""
    folder = work / f"reranker-len{args.max_len}-steps{args.train_steps}"
    record = folder / "bench_train.json"
    if record.is_file():
        return folder, json.loads(record.read_text())
    train_run, train_file = work / "train-bm25.trec", work / "train.jsonl"
    corpus, queries = str(DATA / "corpus.jsonl"), str(DATA / "queries.jsonl")
    split = str(DATA / "qrels" / "train-split.tsv")
    print("building the cross-encoder (cached afterwards):")
    if not train_run.is_file():
        densekit_cli("bm25", "--corpus", corpus, "--queries", queries, "--qrels", split,
                     "--depth", "100", "--save_ranking_to", str(train_run))  # fmt: skip
    if not train_file.is_file():
        densekit_cli("mine", "--run", str(train_run), "--qrels", split, "--corpus", corpus,
                     "--queries", queries, "--output", str(train_file),
                     "--negative_number", "15")  # fmt: skip
    flags = ["--train_group_size", str(args.train_group_size), "--max_len", str(args.max_len),
             "--per_device_train_batch_size", str(args.train_batch), "--max_steps",
             str(args.train_steps), "--learning_rate", "1e-4", "--warmup_ratio", "0.1",
             "--save_steps", "100000", "--seed", "42", "--precision", "fp32"]  # fmt: skip
    start = time.perf_counter()
    densekit_cli("train-reranker", "--model", model_path(), "--dataset_path", str(train_file),
                 "--corpus_path", corpus, "--output_dir", str(folder), "--overwrite_output_dir",
                 *flags)  # fmt: skip
    info = {"train_seconds": time.perf_counter() - start, "flags": " ".join(flags)}
    record.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return folder, info


def bm25_run(work: Path, qrels_path: Path, depth: int) -> dict[str, dict[str, float]]:
    path = work / f"{qrels_path.stem}-bm25-{depth}.trec"
    if not path.is_file():
        densekit_cli("bm25", "--corpus", str(DATA / "corpus.jsonl"), "--queries",
                     str(DATA / "queries.jsonl"), "--qrels", str(qrels_path), "--depth",
                     str(depth), "--save_ranking_to", str(path))  # fmt: skip
    return {qid: dict(hits) for qid, hits in read_run(path).items()}


def top_docids(hits: dict[str, float], depth: int) -> list[str]:
    return [d for d, _ in sorted(hits.items(), key=lambda x: (-x[1], x[0]))[:depth]]


def st_cross_encoder(name: str, folder: Path, work: Path, calibration, max_len: int):
    """sentence-transformers' CrossEncoder for variant ``name``, quantised its own way."""
    from sentence_transformers import CrossEncoder

    if not name.endswith("-q8"):
        return CrossEncoder(str(folder), device="cpu", backend=ST[name], max_length=max_len)
    from sentence_transformers.backend import (
        export_dynamic_quantized_onnx_model,
        export_static_quantized_openvino_model,
    )

    copy = work / f"{name}-{folder.name}"  # fresh: saving over a memory-mapped model crashes
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("checkpoint-*"))
    fp32 = CrossEncoder(str(copy), device="cpu", backend=ST[name], max_length=max_len)
    fp32.save_pretrained(str(copy))  # onnx/model.onnx or openvino/openvino_model.xml
    if name == "st-onnx-q8":
        config = "avx512_vnni" if "avx512_vnni" in cpu_flags() else "avx2"
        export_dynamic_quantized_onnx_model(fp32, config, str(copy))
        (quantized,) = copy.glob(f"onnx/model_q*int8_{config}.onnx")
        file_name = quantized.relative_to(copy).as_posix()
    else:
        from optimum.intel import OVQuantizationConfig

        data = work / "st-calibration"
        data.mkdir(exist_ok=True)
        with open(data / "train.jsonl", "w", encoding="utf-8") as handle:
            for query, passage in calibration:  # a list of two texts: tokenised as a pair
                handle.write(json.dumps({"pair": [query, passage]}) + "\n")
        export_static_quantized_openvino_model(
            fp32, OVQuantizationConfig(num_samples=len(calibration)), str(copy),
            dataset_name=str(data), dataset_config_name="default", dataset_split="train",
            column_name="pair",
        )  # fmt: skip
        file_name = "openvino/openvino_model_qint8_quantized.xml"
    return CrossEncoder(
        str(copy), device="cpu", backend=ST[name], max_length=max_len,
        model_kwargs={"file_name": file_name},
    )  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work_dir", default="/tmp/densekit-bench-rerank")
    p.add_argument("--reranker", help="a cross-encoder folder to use instead of training one")
    p.add_argument("--queries", type=int, default=100, help="dev queries reranked")
    p.add_argument("--depth", type=int, default=100, help="BM25 hits reranked per query")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max_len", type=int, default=128, help="pair max length (training too)")
    p.add_argument("--train_steps", type=int, default=80)
    p.add_argument("--train_group_size", type=int, default=4)
    p.add_argument("--train_batch", type=int, default=4, help="queries per training step")
    p.add_argument("--calibration", type=int, default=300, help="pairs OpenVINO int8 sees")
    p.add_argument("--variants", default=",".join([*DK, *ST]))
    p.add_argument("--output", help="JSON results file")
    p.add_argument("--quick", action="store_true", help="8 queries x 10 hits, 1 round")
    args = p.parse_args()
    if args.quick:
        args.queries, args.depth, args.rounds, args.calibration = 8, 10, 1, 32
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    header("Cross-encoder reranking: densekit backends vs sentence-transformers CrossEncoder", args)
    print(f"cpu flags : {cpu_flags()}")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)

    if args.reranker:
        folder, train_info = Path(args.reranker), {"given": args.reranker}
    else:
        folder, train_info = build_reranker(work, args)
    print(f"reranker  : {folder} {train_info}")

    corpus = load_corpus(DATA / "corpus.jsonl")
    docs = {
        d: (t or "", x or "")
        for d, t, x in zip(corpus["docid"], corpus["title"], corpus["text"], strict=True)
    }
    q = load_queries(DATA / "queries.jsonl")
    query_text = dict(zip(q["query_id"], q["text"], strict=True))
    dev_path = DATA / "qrels" / "dev.tsv"
    qrels_all = load_qrels(dev_path)
    qids = sorted(qrels_all, key=lambda x: (len(x), x))[: args.queries]
    qrels = {qid: qrels_all[qid] for qid in qids}
    first = bm25_run(work, dev_path, 100)
    lists = [(qid, top_docids(first.get(qid, {}), args.depth)) for qid in qids]

    reference = load_reranker(str(folder), "torch", max_len=args.max_len)
    pairs = [reference.format_pair(query_text[qid], *docs[d]) for qid, ds in lists for d in ds]
    train_run = bm25_run(work, DATA / "qrels" / "train-split.tsv", 100)
    train_pairs = [
        reference.format_pair(query_text[qid], *docs[d])
        for qid, hits in sorted(train_run.items())
        for d in top_docids(hits, 10)
    ]
    calibration = sample_pairs(train_pairs, args.calibration)
    print(f"data      : {len(qids)} dev queries x BM25 top {args.depth} = {len(pairs)} pairs; "
          f"OpenVINO int8 calibration {len(calibration)} training-query pairs")  # fmt: skip

    variants = [v for v in args.variants.split(",") if v]
    models, load_s, unavailable = {}, {}, {}
    for name in variants:
        start = time.perf_counter()
        try:
            base = name.removesuffix(PAIR_CALL).removesuffix(WHOLE).removesuffix(PAIR_CALL)
            if base in DK:
                backend, quantize = DK[base]
                whole = WHOLE in name
                exports = work / ("exports-whole" if whole else "exports")
                model = load_reranker(
                    str(folder), backend, quantize, str(exports), args.threads,
                    calibration if quantize else None, first_token=not whole, max_len=args.max_len,
                )  # fmt: skip
                if PAIR_CALL in name:
                    model._pair_tokenizers[args.max_len] = None  # the tokenizer's pair call
                models[name] = model
            else:
                models[name] = st_cross_encoder(name, folder, work, calibration, args.max_len)
        except Exception as exc:  # ST's onnx/openvino backends need optimum
            unavailable[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            print(f"  {name}: unavailable ({unavailable[name]})")
            continue
        load_s[name] = time.perf_counter() - start
    print("load/export (s): " + ", ".join(f"{k} {v:.1f}" for k, v in load_s.items()))
    names = list(models)

    def score(name: str, subset) -> np.ndarray:
        if name.startswith("dk-"):
            return models[name].logits(subset, args.batch_size)
        out = models[name].predict(subset, batch_size=args.batch_size, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    scores: dict[str, np.ndarray] = {}

    def call(name: str):
        return lambda: scores.setdefault(name, score(name, pairs))

    for name in names:  # warm-up: one batch each
        score(name, pairs[: args.batch_size])
    times = alternate({n: call(n) for n in names}, args.rounds, warmup=0)

    def ndcg(values: np.ndarray) -> float:
        run, start = {}, 0
        for qid, ds in lists:
            run[qid] = {
                d: float(s) for d, s in zip(ds, values[start : start + len(ds)], strict=True)
            }
            start += len(ds)
        return evaluate(run, qrels, ["ndcg@10"])[1]["ndcg@10"]

    bm25_ndcg = evaluate({qid: first.get(qid, {}) for qid in qids}, qrels, ["ndcg@10"])[1]
    rows = {}
    ref = scores.get("dk-torch")
    for name in names:
        rate = len(pairs) / median(times[name])
        row = {"median_s": median(times[name]), "spread_s": spread(times[name]),
               "pairs_per_s": rate, "ndcg10": ndcg(scores[name])}  # fmt: skip
        if ref is not None:
            row["max_abs_logit_diff"] = float(np.abs(scores[name] - ref).max())
        rows[name] = row
    st_rows = {n: r for n, r in rows.items() if n.startswith("st-")}
    st_best = max(st_rows, key=lambda n: st_rows[n]["pairs_per_s"]) if st_rows else None
    base = rows.get("dk-torch")
    print()
    print(f"{'variant':<13} {'median s':>9} {'min..max s':>15} {'pairs/s':>8} {'x dk-torch':>10} "
          f"{'x best ST':>9} {'nDCG@10':>8} {'delta':>8} {'max|dlogit|':>11}")  # fmt: skip
    for name, r in rows.items():
        x_base = f"{r['pairs_per_s'] / base['pairs_per_s']:10.2f}" if base else " " * 10
        x_st = f"{r['pairs_per_s'] / rows[st_best]['pairs_per_s']:9.2f}" if st_best else " " * 9
        delta = f"{r['ndcg10'] - base['ndcg10']:+8.4f}" if base else " " * 8
        diff = f"{r.get('max_abs_logit_diff', float('nan')):11.4f}"
        print(f"{name:<13} {r['median_s']:9.2f} {r['spread_s']:>15} {r['pairs_per_s']:8.1f} "
              f"{x_base} {x_st} {r['ndcg10']:8.4f} {delta} {diff}")  # fmt: skip
    print(f"BM25 first stage nDCG@10 (top 100, same queries): {bm25_ndcg['ndcg@10']:.4f}")
    verdict = None
    if st_best and base:
        ok = [n for n in rows if n in DK and base["ndcg10"] - rows[n]["ndcg10"] <= 0.005]
        best = max(ok, key=lambda n: rows[n]["pairs_per_s"])
        ratio = rows[best]["pairs_per_s"] / rows[st_best]["pairs_per_s"]
        verdict = {"best_densekit": best, "best_st": st_best, "ratio": ratio,
                   "met": ratio >= 1.2}  # fmt: skip
        print(f"target (>= 1.2x best ST at <= 0.005 nDCG@10 loss): {best} = {ratio:.2f}x "
              f"{st_best} -> {'met' if ratio >= 1.2 else 'not met'}")  # fmt: skip
    for name, why in unavailable.items():
        print(f"not compared: {name} ({why})")
    if args.output:
        import sentence_transformers

        result = {
            "argv": sys.argv, "args": vars(args), "cpu_flags": cpu_flags(),
            "load_avg_end": list(__import__("os").getloadavg()),
            "sentence_transformers": sentence_transformers.__version__,
            "torch": torch.__version__, "reranker": str(folder), "train": train_info,
            "pairs": len(pairs), "bm25_ndcg10": bm25_ndcg["ndcg@10"], "rows": rows,
            "times": times, "load_seconds": load_s, "unavailable": unavailable,
            "target": verdict,
        }  # fmt: skip
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
