"""CPU encoding backends: densekit torch / ONNX Runtime / OpenVINO (fp32, int8) against
sentence-transformers' own backends, same texts, same run; then nDCG@10 of each int8 variant.

Same model (bundled all-MiniLM-L6-v2), same passage strings (``title + " " + text``), max length
256, batch 64, the same 2 threads everywhere. Variants:

  dk-torch      densekit encode_texts on the torch encoder, fp32 (the 1x of the targets)
  dk-onnx       densekit --backend onnx: ORT-fused graph, fp32
  dk-onnx-int8  densekit --backend onnx --quantize int8 (dynamic, s8 per-channel weights)
  dk-ov         densekit --backend openvino, fp32
  dk-ov-int8    densekit --backend openvino --quantize int8 (NNCF, calibrated on 300 passages)
  st-torch      SentenceTransformer(model).encode, fp32
  st-onnx       ST backend="onnx" (optimum export), fp32
  st-onnx-q8    ST export_dynamic_quantized_onnx_model(model, "avx2" | "avx512_vnni")
  st-ov         ST backend="openvino", fp32
  st-ov-q8      ST export_static_quantized_openvino_model (calibrated on the same 300 passages)

The st-* variants run in ``.venv-st`` (``bash bench/setup_st_backends.sh``: ST's backends need
optimum, which pins transformers < 4.58) through ``bench/_st_backends_worker.py``, which times
its own ``encode`` calls. Throughput: ``--docs`` passages (a fixed random sample), ``--rounds``
rounds alternating all variants (order rotated each round). Quality: the whole corpus and the
200 dev queries (qrels/dev.tsv) for ``--quality`` variants, Flat search, nDCG@10 against
dk-torch's. The fp32 exports are not rescored: tests hold them to torch's vectors within 1e-4.

    bash bench/setup_st_backends.sh && .venv/bin/python bench/encode_backends.py
    .venv/bin/python bench/encode_backends.py --quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (environment first)
import numpy as np
import torch
from _common import (
    DATA,
    DENSEKIT_VARIANTS,
    ROOT,
    alternate,
    header,
    load_texts,
    median,
    model_path,
    spread,
)

from densekit.data.qrels import load_qrels
from densekit.evaluation.metrics import evaluate
from densekit.inference.backends import load_backend, sample_rows
from densekit.inference.encode import encode_texts
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.retrieval.index import build_index
from densekit.retrieval.search import search_index

DK = DENSEKIT_VARIANTS
ST = ("st-torch", "st-onnx", "st-onnx-q8", "st-ov", "st-ov-q8")
QUALITY = "dk-torch,dk-onnx-int8,dk-ov-int8,st-onnx-q8,st-ov-q8"


def cpu_flags() -> str:
    flags = set(Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n")[0].split())
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")
    return " ".join(f for f in wanted if f in flags) + f" (torch: {_capability()})"


def _capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


class StWorker:
    """The .venv-st process holding ST's models; each call encodes one text file there."""

    def __init__(self, workdir: Path, variants: list[str], calibration: list[str], args) -> None:
        python = ROOT / ".venv-st" / "bin" / "python"
        if not python.exists():
            raise SystemExit("no .venv-st: run bash bench/setup_st_backends.sh first")
        (workdir / "calibration.json").write_text(json.dumps(calibration), encoding="utf-8")
        vnni = "avx512_vnni" in cpu_flags()
        cmd = [str(python), str(ROOT / "bench" / "_st_backends_worker.py"),
               "--model", model_path(), "--workdir", str(workdir),
               "--calibration", str(workdir / "calibration.json"), "--variants", ",".join(variants),
               "--onnx_config", "avx512_vnni" if vnni else "avx2",
               "--batch_size", str(args.batch_size), "--max_len", str(args.max_len),
               "--threads", str(args.threads)]  # fmt: skip
        self.workdir = workdir
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._reply()
        self.files: dict[int, Path] = {}

    def _reply(self) -> dict:
        """The worker's next JSON line (libraries print other lines to stdout too)."""
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
            print(f"  [st] {line.rstrip()}")
        raise SystemExit("the ST worker died (see its output above)")

    def encode(self, variant: str, texts: list[str], is_query: bool) -> tuple[np.ndarray, float]:
        key = id(texts)
        if key not in self.files:
            self.files[key] = self.workdir / f"texts-{len(self.files)}.json"
            self.files[key].write_text(json.dumps(texts), encoding="utf-8")
        out = self.workdir / f"{variant}.npy"
        request = {"variant": variant, "texts": str(self.files[key]), "is_query": is_query}
        self.proc.stdin.write(json.dumps({**request, "out": str(out)}) + "\n")
        self.proc.stdin.flush()
        seconds = self._reply()["seconds"]
        return np.load(out), seconds

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def ndcg10(q: np.ndarray, d: np.ndarray, qids, doc_ids, qrels) -> float:
    run = search_index(qids, q, build_index(d), doc_ids, 100)
    return evaluate({k: dict(v) for k, v in run.items()}, qrels, ["ndcg@10"])[1]["ndcg@10"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=1024, help="passages timed (fixed random sample)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--max_len", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calibration", type=int, default=300, help="passages int8 calibrates on")
    p.add_argument("--variants", default=",".join([*DK, *ST]))
    p.add_argument("--quality", default=QUALITY, help="variants scored on the full corpus")
    p.add_argument("--quick", action="store_true", help="128 passages, 1 round, no quality")
    args = p.parse_args()
    if args.quick:
        args.docs, args.rounds, args.quality = 128, 1, ""
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    header("CPU encoding backends: densekit vs sentence-transformers", args)
    print(f"cpu flags : {cpu_flags()}")
    variants = args.variants.split(",")
    quality = [v for v in args.quality.split(",") if v]

    doc_ids, passages, query_text = load_texts()
    timed = [passages[i] for i in sample_rows(len(passages), args.docs, seed=1)]
    calibration = [passages[i] for i in sample_rows(len(passages), args.calibration, seed=0)]
    print(f"data      : {len(timed)} passages timed; calibration {len(calibration)} passages")

    workdir = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    linked = workdir / "model"
    linked.mkdir()
    for item in Path(model_path()).iterdir():
        (linked / item.name).symlink_to(item)
    encoder = DenseEncoder.from_pretrained(str(linked)).eval()
    tokenizer = load_tokenizer(str(linked))
    encoders, export_s = {}, {}
    for name in [v for v in DK if v in set(variants) | set(quality)]:
        backend, quantize = DK[name]
        start = time.perf_counter()
        encoders[name] = load_backend(
            encoder, tokenizer, str(linked), backend, quantize, str(workdir / "exports"),
            calibration if quantize else None, args.threads,
        )  # fmt: skip
        export_s[name] = time.perf_counter() - start
    st_names = [v for v in ST if v in set(variants) | set(quality)]
    worker = StWorker(workdir, st_names, calibration, args) if st_names else None
    if worker:
        print(f"ST        : sentence-transformers {worker.ready['sentence_transformers']}, "
              f"exports {worker.ready['export_seconds']:.1f} s")  # fmt: skip
    print("densekit exports (s): " + ", ".join(f"{k} {v:.1f}" for k, v in export_s.items()))

    def encode(name: str, texts: list[str], is_query: bool) -> tuple[np.ndarray, float]:
        if name.startswith("st-"):
            return worker.encode(name, texts, is_query)
        start = time.perf_counter()
        vectors = encode_texts(
            encoders[name], tokenizer, texts, is_query, args.batch_size, args.max_len,
            progress=False,
        )  # fmt: skip
        return vectors, time.perf_counter() - start

    seconds: dict[str, list[float]] = {name: [] for name in variants}

    def timed_call(name: str):
        return lambda: seconds[name].append(encode(name, timed, False)[1])

    for name in variants:  # warm-up: one batch each
        encode(name, timed[: args.batch_size], False)
    alternate({name: timed_call(name) for name in variants}, args.rounds, warmup=0, log=False)
    base = len(timed) / median(seconds["dk-torch"]) if "dk-torch" in seconds else None
    st_rates = [(len(timed) / median(seconds[v]), v) for v in variants if v.startswith("st-")]
    st_best = max(st_rates) if st_rates else None  # none timed: no "x best ST" column
    print()
    print(f"{'variant':<13} {'median s':>9} {'min..max s':>15} {'passages/s':>11} "
          f"{'x dk-torch':>10} {'x best ST':>10}")  # fmt: skip
    for name in variants:
        rate = len(timed) / median(seconds[name])
        vs_base = f"{rate / base:10.2f}" if base else ""
        vs_st = f"{rate / st_best[0]:10.2f}" if st_best else ""
        print(f"{name:<13} {median(seconds[name]):9.2f} {spread(seconds[name]):>15} "
              f"{rate:11.2f} {vs_base} {vs_st}")  # fmt: skip
    if st_best:
        print(f"best ST variant: {st_best[1]} ({st_best[0]:.2f} passages/s)")

    if quality:
        qrels = load_qrels(DATA / "qrels" / "dev.tsv")
        qids = sorted(qrels, key=lambda q: (len(q), q))
        queries = [query_text[q] for q in qids]
        print(f"\nquality: {len(passages)} passages, {len(qids)} dev queries")
        reference = None
        for name in quality:
            d, d_s = encode(name, passages, False)
            q, _ = encode(name, queries, True)
            value = ndcg10(q, d, qids, doc_ids, qrels)
            line = f"  {name:<13} nDCG@10 {value:.4f}  ({len(passages) / d_s:.1f} passages/s)"
            if reference is None:
                reference = (value, d)
            else:
                cos = (d * reference[1]).sum(1) / np.linalg.norm(d, axis=1)
                line += (f"  delta {value - reference[0]:+.4f}; passage cosine to "
                         f"{quality[0]} mean {cos.mean():.4f} min {cos.min():.4f}")  # fmt: skip
            print(line, flush=True)
    if worker:
        worker.close()


if __name__ == "__main__":
    main()
