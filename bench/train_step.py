"""One contrastive training step: densekit's RetrievalTrainer vs a plain PyTorch loop and vs
sentence-transformers' MultipleNegativesRankingLoss, same model (all-MiniLM-L6-v2), same batch.

The batch is real SciFact text (training queries, their first judged passage as positive and
random corpus passages as negatives), tokenized once. Every variant is timed in the same
process, alternating round by round:

  plain      AutoModel forward of queries and passages, mean pooling, L2 normalize, InfoNCE
             (scores / 0.05, cross-entropy with targets arange * group), backward,
             torch.optim.AdamW step, zero_grad — on the very tensors densekit gets.
  densekit   the encoder `densekit train` builds (build_encoder: its CPU dropout masks drawn
             fast, densekit.modeling.cpu_dropout) in a real RetrievalTrainer (fp32):
             trainer.training_step(model, inputs)
             + trainer.optimizer.step() + zero_grad; model and optimizer prepared by the
             trainer's accelerator as Trainer.train() does.
  dk-bf16    the same with RetrievalTrainingArguments(bf16=True): accelerate wraps the
             forward in torch.autocast("cpu", bfloat16), which is what ``--bf16`` does.
  st         sentence-transformers fp32: columns anchor / positive / negative_1..3 tokenized
             by the ST model, MultipleNegativesRankingLoss(scale=20) forward, backward,
             torch.optim.AdamW step, zero_grad.

    .venv/bin/python bench/train_step.py              # 16 queries x group 4, 5 rounds
    .venv/bin/python bench/train_step.py --quick      # smoke test (< 1 min)
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import warnings

import _common  # noqa: F401  (environment first)
import torch
import torch.nn.functional as F
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

from densekit.arguments import RetrievalTrainingArguments
from densekit.data.collator import tokenize
from densekit.data.qrels import load_qrels
from densekit.modeling.encoder import load_tokenizer
from densekit.modeling.factory import build_encoder
from densekit.training.trainer import RetrievalTrainer

warnings.filterwarnings("ignore")


def make_batch(n_queries: int, group: int, seed: int) -> tuple[list[str], list[str]]:
    """Queries and their groups (positive first, then random non-judged passages)."""
    doc_ids, passages, query_text = load_texts()
    text_of = dict(zip(doc_ids, passages, strict=True))
    qrels = load_qrels(DATA / "qrels" / "train-split.tsv")
    judged = {d for docs in qrels.values() for d in docs}
    pool = [d for d in doc_ids if d not in judged]
    rng = random.Random(seed)
    qids = sorted(qrels, key=lambda q: (len(q), q))[:n_queries]
    if len(qids) < n_queries:
        raise SystemExit(f"only {len(qids)} training queries")
    queries, group_texts = [], []
    for qid in qids:
        positive = next(d for d, rel in qrels[qid].items() if rel > 0)
        queries.append(query_text[qid])
        group_texts.append(text_of[positive])
        group_texts.extend(text_of[d] for d in rng.sample(pool, group - 1))
    return queries, group_texts


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=16)
    p.add_argument("--group", type=int, default=4, help="passages per query (1 positive)")
    p.add_argument("--query_len", type=int, default=32)
    p.add_argument("--passage_len", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=1, help="timed steps per variant per round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fused_baselines",
        action="store_true",
        help="give the plain and ST loops AdamW(fused=True), as the Trainer's default optim has",
    )
    p.add_argument("--no_st", action="store_true", help="skip sentence-transformers")
    p.add_argument("--no_bf16", action="store_true", help="skip densekit bf16")
    p.add_argument("--quick", action="store_true", help="4 queries, passages of 64, 2 rounds")
    args = p.parse_args()
    if args.quick:
        args.queries, args.passage_len, args.rounds = 4, 64, 2
    header(
        "training step: densekit RetrievalTrainer vs plain PyTorch vs sentence-transformers", args
    )
    torch.manual_seed(args.seed)

    path = model_path()
    queries, passages = make_batch(args.queries, args.group, args.seed)
    tokenizer = load_tokenizer(path)
    # Exactly what RetrievalCollator produces (pad_to_multiple_of=8), built once.
    q_batch = tokenize(tokenizer, queries, args.query_len)
    p_batch = tokenize(tokenizer, passages, args.passage_len)
    inputs = {"query": q_batch, "passage": p_batch}
    print(
        f"batch     : queries {tuple(q_batch['input_ids'].shape)}, "
        f"passages {tuple(p_batch['input_ids'].shape)} (densekit/plain tensors)"
    )
    targets = torch.arange(args.queries) * args.group
    lengths = dict(query_max_len=args.query_len, passage_max_len=args.passage_len)
    tmp = tempfile.mkdtemp(prefix="densekit-bench-")

    # ---------------------------------------------------------------- plain PyTorch
    from transformers import AutoModel

    plain = AutoModel.from_pretrained(path)
    fused = {"fused": True} if args.fused_baselines else {}
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=args.lr, weight_decay=0.0, **fused)
    plain_in = {side: dict(batch) for side, batch in inputs.items()}  # the same tensors

    def plain_loss(model) -> torch.Tensor:
        q_in, p_in = plain_in["query"], plain_in["passage"]
        q = F.normalize(mean_pool(model(**q_in).last_hidden_state, q_in["attention_mask"]), dim=-1)
        d = F.normalize(mean_pool(model(**p_in).last_hidden_state, p_in["attention_mask"]), dim=-1)
        return F.cross_entropy(q @ d.T / args.temperature, targets)

    # ---------------------------------------------------------------- densekit trainers
    def make_trainer(bf16: bool):
        encoder = build_encoder(path, temperature=args.temperature, **lengths)
        targs = RetrievalTrainingArguments(
            output_dir=tmp,
            overwrite_output_dir=True,
            per_device_train_batch_size=args.queries,
            learning_rate=args.lr,
            bf16=bf16,
            precision="bf16" if bf16 else "fp32",  # the default, auto, is bf16 on native CPUs
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            seed=args.seed,
        )
        trainer = RetrievalTrainer(model=encoder, args=targs, processing_class=tokenizer)
        trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
        # As Trainer.train() does: the accelerator wraps the model (autocast under bf16)
        # and the optimizer; training_step then runs on the wrapped model.
        model, trainer.optimizer = trainer.accelerator.prepare(trainer.model, trainer.optimizer)
        trainer.model_wrapped = model
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train()'s loop
        return trainer, model

    dk, dk_model = make_trainer(bf16=False)
    variants = ["plain", "densekit"]
    if not args.no_bf16:
        dk16, dk16_model = make_trainer(bf16=True)
        variants.append("dk-bf16")
    base = dk.optimizer.optimizer if hasattr(dk.optimizer, "optimizer") else dk.optimizer
    print(
        f"optimizers: plain/ST torch.optim.AdamW(fused={plain_opt.defaults['fused']}); "
        f"trainer torch.optim.{type(base).__name__}(fused={base.defaults.get('fused')}) from "
        f"optim={dk.args.optim.value}"
    )

    # ---------------------------------------------------------------- sentence-transformers
    if not args.no_st:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )

        st = SentenceTransformer(path, device="cpu")
        mnrl = MultipleNegativesRankingLoss(st, scale=1.0 / args.temperature)
        st_opt = torch.optim.AdamW(st.parameters(), lr=args.lr, weight_decay=0.0, **fused)
        prep = st.preprocess if hasattr(st, "preprocess") else st.tokenize
        st.max_seq_length = args.query_len
        columns = [prep(queries)]
        st.max_seq_length = args.passage_len
        for j in range(args.group):  # positive, negative_1, ..., negative_{group-1}
            columns.append(prep(passages[j :: args.group]))
        print(
            "st columns: anchor "
            f"{tuple(columns[0]['input_ids'].shape)}, "
            + ", ".join(
                f"{'positive' if j == 0 else f'negative_{j}'} {tuple(c['input_ids'].shape)}"
                for j, c in enumerate(columns[1:])
            )
        )
        variants.append("st")

        def st_features():  # fresh dicts: ST modules add keys to the dicts they are given
            return [dict(c) for c in columns]

    # ---------------------------------------------------------------- sanity: same loss, dtypes
    seen_dtype: dict[str, torch.dtype] = {}

    def first_linear(encoder) -> torch.nn.Module:  # a matmul: bf16 output iff autocast is on
        return next(m for m in encoder.query_model.modules() if isinstance(m, torch.nn.Linear))

    def hook(name):
        def record(module, args_, output):
            seen_dtype[name] = output.dtype

        return record

    handles = [first_linear(dk.model).register_forward_hook(hook("densekit"))]
    if not args.no_bf16:
        handles.append(first_linear(dk16.model).register_forward_hook(hook("dk-bf16")))
    with torch.no_grad():
        plain.eval()
        losses = {"plain": plain_loss(plain).item()}
        dk_model.eval()
        losses["densekit"] = dk.compute_loss(dk_model, inputs).item()
        if not args.no_bf16:
            dk16_model.eval()
            losses["dk-bf16"] = dk16.compute_loss(dk16_model, inputs).item()
        if not args.no_st:
            st.eval()
            losses["st"] = mnrl(st_features(), None).item()
    for h in handles:
        h.remove()
    print(
        "loss before training (eval mode, same weights): "
        + ", ".join(f"{k} {v:.5f}" for k, v in losses.items())
    )
    print(f"first Linear output dtype: {', '.join(f'{k} {v}' for k, v in seen_dtype.items())}")
    if seen_dtype.get("densekit") != torch.float32 or (
        not args.no_bf16 and seen_dtype.get("dk-bf16") != torch.bfloat16
    ):
        raise SystemExit("autocast is not where it should be; the comparison would be wrong")
    if abs(losses["densekit"] - losses["plain"]) > 1e-4:
        raise SystemExit("densekit and the plain loop disagree on the loss")

    # ---------------------------------------------------------------- steps
    parts: dict[str, dict[str, list[float]]] = {v: {"fwd+bwd": [], "opt": []} for v in variants}

    def timed(name, forward_backward, optimizer_step):
        def step():
            t0 = time.perf_counter()
            forward_backward()
            t1 = time.perf_counter()
            optimizer_step()
            t2 = time.perf_counter()
            parts[name]["fwd+bwd"].append(t1 - t0)
            parts[name]["opt"].append(t2 - t1)

        return step

    def plain_fb():
        plain.train()
        plain_loss(plain).backward()

    def plain_opt_step():
        plain_opt.step()
        plain_opt.zero_grad()

    def dk_opt_step(trainer, model):
        def go():
            trainer.optimizer.step()
            model.zero_grad()

        return go

    fns = {
        "plain": timed("plain", plain_fb, plain_opt_step),
        "densekit": timed(
            "densekit", lambda: dk.training_step(dk_model, inputs), dk_opt_step(dk, dk_model)
        ),
    }
    if not args.no_bf16:
        fns["dk-bf16"] = timed(
            "dk-bf16",
            lambda: dk16.training_step(dk16_model, inputs),
            dk_opt_step(dk16, dk16_model),
        )
    if not args.no_st:

        def st_fb():
            st.train()
            mnrl(st_features(), None).backward()

        def st_opt_step():
            st_opt.step()
            st_opt.zero_grad()

        fns["st"] = timed("st", st_fb, st_opt_step)

    times = alternate(fns, args.rounds, warmup=args.warmup, repeat=args.steps)
    warm = args.warmup
    print()
    print(
        f"{'variant':<10} {'ms/step':>9} {'min..max s':>13} {'fwd+bwd ms':>11} {'opt ms':>8} "
        f"{'queries/s':>10}"
    )
    ms = {}
    for name in variants:
        ms[name] = 1000 * median(times[name])
        fb = 1000 * median(parts[name]["fwd+bwd"][warm:])
        opt = 1000 * median(parts[name]["opt"][warm:])
        qps = args.queries / median(times[name])
        print(
            f"{name:<10} {ms[name]:9.1f} {spread(times[name]):>13} {fb:11.1f} {opt:8.1f} "
            f"{qps:10.2f}"
        )
    print()
    print(f"ratio densekit/plain ms/step: {ms['densekit'] / ms['plain']:.3f} (target <= 1.05)")
    fb = {n: median(parts[n]["fwd+bwd"][warm:]) for n in variants}
    print(f"ratio densekit/plain forward+backward only: {fb['densekit'] / fb['plain']:.3f}")
    best = {n: min(times[n]) for n in variants}  # least disturbed round, for a noisy machine
    print(f"ratio densekit/plain, fastest round each: {best['densekit'] / best['plain']:.3f}")
    if "st" in ms:
        print(f"throughput densekit fp32 / ST fp32 (queries/s): {ms['st'] / ms['densekit']:.3f}")
        if "dk-bf16" in ms:
            print(f"throughput densekit bf16 / ST fp32 (queries/s): {ms['st'] / ms['dk-bf16']:.3f}")
    if "dk-bf16" in ms:
        print(f"throughput densekit bf16 / densekit fp32: {ms['densekit'] / ms['dk-bf16']:.3f}")
    others = ", ".join(
        f"{n}/{m} {best[m] / best[n]:.3f}"
        for n, m in (("densekit", "st"), ("dk-bf16", "st"), ("dk-bf16", "densekit"))
        if n in best and m in best
    )
    if others:
        print(f"throughput ratios, fastest round each: {others}")
    if args.steps == 1:
        pairs = [("densekit", "plain"), ("densekit", "st"), ("dk-bf16", "st")]
        paired = ", ".join(
            f"{a}/{b} {paired_ratio(times, a, b):.3f}" for a, b in pairs if a in ms and b in ms
        )
        print(f"time ratios, median of per-round ratios (lower = densekit faster): {paired}")


if __name__ == "__main__":
    main()
