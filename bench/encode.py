"""Corpus encoding: densekit ``encode_texts`` vs ``SentenceTransformer.encode``, plus quality.

Same model (bundled all-MiniLM-L6-v2), same passage strings (densekit's ``title + " " + text``),
max length 256, batch size 64, alternating in one process:

  st         SentenceTransformer.encode (fp32)
  densekit   densekit.inference.encode.encode_texts (fp32)
  dk-bf16    encode_texts(bf16=True) (torch.autocast on CPU)

Then, on the dev split (qrels/dev.tsv, 200 queries):

  * nDCG@10 of densekit fp32 vs bf16 vectors (Flat index: build_index + search_index + evaluate),
    to show what bf16 costs in quality;
  * faithfulness: densekit's zero-shot nDCG@10 (its encode + search + evaluate) vs
    sentence-transformers encode + NumPy top-100 + pytrec_eval ndcg_cut_10; must agree to 0.002.

    .venv/bin/python bench/encode.py                  # all 5,183 passages, 1 round
    .venv/bin/python bench/encode.py --quick          # smoke test (< 1 min)
"""

from __future__ import annotations

import argparse
import warnings

import _common  # noqa: F401  (environment first)
import numpy as np
import torch
from _common import (
    DATA,
    alternate,
    header,
    load_texts,
    median,
    model_path,
    paired_ratio,
    spread,
)

from densekit.data.qrels import load_qrels
from densekit.evaluation.metrics import evaluate
from densekit.inference.encode import encode_texts
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.retrieval.index import build_index
from densekit.retrieval.search import search_index

warnings.filterwarnings("ignore")


def numpy_run(q: np.ndarray, d: np.ndarray, qids, doc_ids, depth: int):
    """Top-``depth`` by inner product with NumPy: {qid: {docid: score}}."""
    scores = q @ d.T
    k = min(depth, d.shape[0])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    run = {}
    for row, qid in enumerate(qids):
        run[qid] = {doc_ids[j]: float(scores[row, j]) for j in part[row]}
    return run


def pytrec_ndcg10(run, qrels) -> float:
    import pytrec_eval

    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    per_query = evaluator.evaluate(run)
    return float(np.mean([v["ndcg_cut_10"] for v in per_query.values()]))


def densekit_ndcg10(run, qrels) -> float:
    return evaluate(run, qrels, ["ndcg@10"])[1]["ndcg@10"]


def cosine_stats(a: np.ndarray, b: np.ndarray) -> str:
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return (
        f"max |diff| {np.abs(a - b).max():.2e}, cosine min {cos.min():.6f} / mean {cos.mean():.6f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=0, help="passages to encode (0: all 5,183)")
    p.add_argument("--queries", type=int, default=0, help="dev queries to evaluate (0: all 200)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--max_len", type=int, default=256)
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds over the corpus")
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--no_bf16", action="store_true")
    p.add_argument("--quick", action="store_true", help="30 queries, 64 passages")
    args = p.parse_args()
    if args.quick:
        args.docs, args.queries, args.rounds = 64, 30, 1
    header("encoding: densekit encode_texts vs SentenceTransformer.encode", args)

    doc_ids, passages, query_text = load_texts()
    qrels = load_qrels(DATA / "qrels" / "dev.tsv")
    qids = sorted(qrels, key=lambda q: (len(q), q))
    if args.queries:
        qids = qids[: args.queries]
    qrels = {q: qrels[q] for q in qids}
    if args.docs and args.docs < len(doc_ids):
        # A subset keeps every passage judged for the evaluated queries, then fills up in
        # corpus order, so nDCG on it still means something (it is easier than the full one).
        judged = {d for docs in qrels.values() for d in docs}
        keep = [i for i, d in enumerate(doc_ids) if d in judged]
        rest = [i for i, d in enumerate(doc_ids) if d not in judged]
        chosen = sorted(keep + rest[: max(0, args.docs - len(keep))])
        doc_ids = [doc_ids[i] for i in chosen]
        passages = [passages[i] for i in chosen]
    queries = [query_text[q] for q in qids]
    print(f"data      : {len(passages)} passages, {len(qids)} dev queries")

    path = model_path()
    encoder = DenseEncoder.from_pretrained(path)
    tokenizer = load_tokenizer(path, encoder.settings.padding_side)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = args.max_len
    print(f"densekit  : {encoder.settings}")

    out: dict[str, np.ndarray] = {}

    def st_encode(texts):
        return st.encode(
            texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False
        )

    def dk_encode(texts, is_query, bf16):
        return encode_texts(
            encoder,
            tokenizer,
            texts,
            is_query=is_query,
            batch_size=args.batch_size,
            max_len=args.max_len,
            bf16=bf16,
            progress=False,
        )

    fns = {
        "st": lambda: out.__setitem__("st", st_encode(passages)),
        "densekit": lambda: out.__setitem__("densekit", dk_encode(passages, False, False)),
    }
    if not args.no_bf16:
        fns["dk-bf16"] = lambda: out.__setitem__("dk-bf16", dk_encode(passages, False, True))

    # Warm up on one batch each (the full corpus is too slow to spend on warm-up).
    head = passages[: args.batch_size]
    st_encode(head)
    dk_encode(head, False, False)
    if not args.no_bf16:
        dk_encode(head, False, True)

    times = alternate(fns, args.rounds, warmup=0)
    print()
    print(f"{'variant':<10} {'median s':>9} {'min..max s':>15} {'passages/s':>11}")
    rate = {}
    for name, t in times.items():
        rate[name] = len(passages) / median(t)
        print(f"{name:<10} {median(t):9.2f} {spread(t):>15} {rate[name]:11.2f}")
    print(f"ratio densekit fp32 / ST fp32 passages/s: {rate['densekit'] / rate['st']:.3f}")
    if args.rounds > 1:
        print(
            "ratio densekit fp32 / ST fp32, median of per-round ratios: "
            f"{1 / paired_ratio(times, 'densekit', 'st'):.3f}"
        )
    if "dk-bf16" in rate:
        print(f"ratio densekit bf16 / ST fp32 passages/s: {rate['dk-bf16'] / rate['st']:.3f}")
        print(f"ratio densekit bf16 / densekit fp32: {rate['dk-bf16'] / rate['densekit']:.3f}")

    # ------------------------------------------------------------------ quality
    print()
    print(f"passage vectors densekit fp32 vs ST fp32: {cosine_stats(out['densekit'], out['st'])}")
    q_st = st_encode(queries)
    q_dk = dk_encode(queries, True, False)
    print(f"query vectors densekit fp32 vs ST fp32  : {cosine_stats(q_dk, q_st)}")

    def dk_run(q_vecs, d_vecs):
        index = build_index(d_vecs)
        run = search_index(qids, q_vecs, index, doc_ids, args.depth)
        return {q: dict(hits) for q, hits in run.items()}

    run_dk = dk_run(q_dk, out["densekit"])
    run_st = numpy_run(q_st, out["st"], qids, doc_ids, args.depth)
    ndcg = {
        "densekit fp32 (encode+search+evaluate)": densekit_ndcg10(run_dk, qrels),
        "ST fp32 (encode+numpy+pytrec_eval)": pytrec_ndcg10(run_st, qrels),
        "cross: densekit run, pytrec_eval": pytrec_ndcg10(run_dk, qrels),
        "cross: ST run, densekit evaluate": densekit_ndcg10(run_st, qrels),
    }
    if not args.no_bf16:
        q_dk16 = dk_encode(queries, True, True)
        print(
            f"passage vectors densekit bf16 vs fp32   : "
            f"{cosine_stats(out['dk-bf16'], out['densekit'])}"
        )
        print(f"query vectors densekit bf16 vs fp32     : {cosine_stats(q_dk16, q_dk)}")
        ndcg["densekit bf16 (encode+search+evaluate)"] = densekit_ndcg10(
            dk_run(q_dk16, out["dk-bf16"]), qrels
        )
    print()
    print(f"nDCG@10 on {len(qids)} dev queries over {len(passages)} passages:")
    for name, value in ndcg.items():
        print(f"  {name:<42} {value:.4f}")
    gap = abs(
        ndcg["densekit fp32 (encode+search+evaluate)"] - ndcg["ST fp32 (encode+numpy+pytrec_eval)"]
    )
    verdict = "PASS" if gap <= 0.002 else "FAIL"
    print(f"faithfulness |densekit - ST/pytrec_eval| = {gap:.5f} (<= 0.002: {verdict})")
    if not args.no_bf16:
        loss = (
            ndcg["densekit fp32 (encode+search+evaluate)"]
            - ndcg["densekit bf16 (encode+search+evaluate)"]
        )
        print(f"bf16 quality loss (fp32 - bf16 nDCG@10): {loss:+.4f}")
    if verdict == "FAIL":
        raise SystemExit(1)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
