"""The JAX path against the PyTorch path on this machine: one training step and corpus encoding,
same model (all-MiniLM-L6-v2), same batch, same process, alternating round by round.

  step   16 SciFact queries x group 2 (positive + a random passage), padded to 32 / 128 tokens
         (the JAX driver's fixed shapes; torch gets the very same tensors). Mean pooling, L2
         normalization, InfoNCE at temperature 0.05, AdamW, dropout on (train mode):
           torch  densekit's DenseEncoder + loss registry, backward, torch.optim.AdamW, zero_grad
           jax    densekit.jax: the jitted StepBuilder step (optax AdamW), block_until_ready
           jax-gc the same with GradCache chunks of 4 queries / 8 passages (with --grad_cache)
  encode SciFact passages through densekit's encode_texts (batch 64, max length 256, sorted by
         length): the torch DenseEncoder vs the JaxEncoder (shapes padded to buckets).

JAX compile time is reported apart (warm-up, untimed). torch runs on its intra-op threads
(torch.get_num_threads()); XLA's CPU client uses its own pool over every core.

    .venv/bin/python bench/jax_vs_torch.py                 # 5 rounds, 1024 passages
    .venv/bin/python bench/jax_vs_torch.py --quick         # smoke test
"""

from __future__ import annotations

import argparse
import time
import warnings

import _common  # noqa: F401  (environment first)
import jax
import numpy as np
import optax
import torch
from _common import alternate, header, load_texts, median, model_path, paired_ratio, spread
from train_step import make_batch

from densekit.data.collator import tokenize
from densekit.inference.encode import encode_texts
from densekit.jax.data import fixed_arrays
from densekit.jax.encoder import JaxEncoder
from densekit.jax.losses import infonce
from densekit.jax.sharding import DataParallel
from densekit.jax.train_step import StepBuilder, TrainState
from densekit.modeling.encoder import DenseEncoder, load_tokenizer
from densekit.modeling.losses import InfoNCELoss

warnings.filterwarnings("ignore")
SETTINGS = {"pooling": "mean", "normalize": True, "temperature": 0.05}


def torch_step(path: str, q_batch, p_batch, lr: float):
    model = DenseEncoder.from_pretrained(path, **SETTINGS).train()
    loss_fn = InfoNCELoss(temperature=0.05)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    def step() -> None:
        loss = loss_fn(model.encode(dict(q_batch), True), model.encode(dict(p_batch), False))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def jax_step(path: str, q_batch, p_batch, lr: float, args, grad_cache=None):
    encoder = JaxEncoder.from_pretrained(path, **SETTINGS)
    place, tx = DataParallel(), optax.adamw(lr)
    loss_fn = lambda q, p: infonce(q, p, temperature=0.05)  # noqa: E731
    compiled = StepBuilder(encoder.vectors, loss_fn, tx, place, grad_cache).jitted()
    queries = place.global_batch(fixed_arrays(q_batch, args.query_len))
    passages = place.global_batch(fixed_arrays(p_batch, args.passage_len))
    holder = {"state": place.replicate(TrainState.create(encoder.params, tx))}
    start = time.perf_counter()
    holder["state"], loss = compiled(holder["state"], queries, passages)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - start

    def step() -> None:
        holder["state"], loss = compiled(holder["state"], queries, passages)
        jax.block_until_ready(loss)

    return step, compile_s


def bench_steps(args, path: str) -> None:
    queries, passages = make_batch(args.queries, args.group, args.seed)
    tokenizer = load_tokenizer(path)
    q_batch = tokenize(tokenizer, queries, args.query_len, pad_to_multiple_of=args.query_len)
    p_batch = tokenize(tokenizer, passages, args.passage_len, pad_to_multiple_of=args.passage_len)
    print(
        f"batch     : queries {tuple(q_batch['input_ids'].shape)}, "
        f"passages {tuple(p_batch['input_ids'].shape)}"
    )
    fns = {"torch": torch_step(path, q_batch, p_batch, args.lr)}
    fns["jax"], compile_s = jax_step(path, q_batch, p_batch, args.lr, args)
    print(f"jax step compile (first call): {compile_s:.1f}s")
    if args.grad_cache:
        fns["jax-gc"], compile_gc = jax_step(path, q_batch, p_batch, args.lr, args, (4, 8))
        print(f"jax GradCache step compile (first call): {compile_gc:.1f}s")
    times = alternate(fns, args.rounds, warmup=1)
    print()
    for name, values in times.items():
        print(f"{name:7s} step: median {median(values) * 1000:.0f} ms ({spread(values)} s)")
    for name in [n for n in fns if n != "torch"]:
        print(
            f"ratio {name}/torch step time: median {median(times[name]) / median(times['torch']):.3f}"
            f", per-round {paired_ratio(times, name, 'torch'):.3f}"
        )


def bench_encode(args, path: str) -> None:
    _, passages, _ = load_texts()
    texts = passages[: args.passages]
    tokenizer = load_tokenizer(path)
    torch_encoder = DenseEncoder.from_pretrained(path).eval()
    jax_encoder = JaxEncoder.from_pretrained(path)
    start = time.perf_counter()
    warm = encode_texts(jax_encoder, tokenizer, texts, False, 64, progress=False)
    print(
        f"jax encode first pass (compiles every shape bucket): {time.perf_counter() - start:.1f}s"
    )
    reference = encode_texts(torch_encoder, tokenizer, texts, False, 64, progress=False)
    print(f"max |jax - torch| over {len(texts)} vectors: {np.abs(warm - reference).max():.2e}")
    fns = {
        "torch": lambda: encode_texts(torch_encoder, tokenizer, texts, False, 64, progress=False),
        "jax": lambda: encode_texts(jax_encoder, tokenizer, texts, False, 64, progress=False),
    }
    times = alternate(fns, args.encode_rounds, warmup=0)
    for name, values in times.items():
        print(
            f"{name:7s} encode: {len(texts) / median(values):.1f} passages/s ({spread(values)} s)"
        )
    print(
        f"ratio jax/torch encode throughput: {median(times['torch']) / median(times['jax']):.3f}"
        f", per-round {1 / paired_ratio(times, 'jax', 'torch'):.3f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=16)
    p.add_argument("--group", type=int, default=2)
    p.add_argument("--query_len", type=int, default=32)
    p.add_argument("--passage_len", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--passages", type=int, default=1024, help="passages encoded per round")
    p.add_argument("--encode_rounds", type=int, default=3)
    p.add_argument("--grad_cache", action="store_true", help="also time the GradCache step")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="4 queries, 2 rounds, 128 passages")
    args = p.parse_args()
    if args.quick:
        args.queries, args.rounds, args.passages, args.encode_rounds = 4, 2, 128, 1
    header("JAX path vs PyTorch path: training step and encoding (CPU)", args)
    print(f"jax       : {jax.__version__}, backend {jax.default_backend()}, {jax.devices()}")
    torch.manual_seed(args.seed)
    path = model_path()
    bench_steps(args, path)
    print()
    bench_encode(args, path)


if __name__ == "__main__":
    main()
