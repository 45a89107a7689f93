"""GradCache cost: time per step against the plain step (same process, alternating) and peak
memory of each at a large batch (separate processes, peak RSS), on the bundled MiniLM.

    python bench/grad_cache.py time   --batch 64  --group 4 --chunk 16
    python bench/grad_cache.py memory --batch 256 --group 2 --chunk 16 --passage_len 64

Targets (issue 4): time ratio <= 1.4; GradCache peak memory <= 1/3 of the plain step's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile

from _common import alternate, header, load_texts, median, model_path, spread


def _setup(args):
    import torch

    from densekit.arguments import RetrievalTrainingArguments
    from densekit.data.collator import RetrievalCollator
    from densekit.modeling.encoder import DenseEncoder, load_tokenizer
    from densekit.training.trainer import RetrievalTrainer

    torch.manual_seed(0)
    _, passages, query_text = load_texts()
    queries = list(query_text.values())
    items = [
        {
            "query": queries[i % len(queries)],
            "passages": [passages[(i * args.group + j) % len(passages)] for j in range(args.group)],
        }
        for i in range(args.batch)
    ]
    tokenizer = load_tokenizer(model_path())
    batch = RetrievalCollator(tokenizer, args.query_len, args.passage_len)(items)
    trainers = {}
    encoder = DenseEncoder.from_pretrained(model_path())
    for name, grad_cache in (("plain", False), ("grad_cache", True)):
        trainer_args = RetrievalTrainingArguments(
            output_dir=tempfile.mkdtemp(),
            grad_cache=grad_cache,
            gc_q_chunk_size=args.chunk,
            gc_p_chunk_size=args.chunk,
            report_to=[],
        )
        trainers[name] = RetrievalTrainer(model=encoder, args=trainer_args)
    return encoder, batch, trainers


def run_time(args) -> None:
    encoder, batch, trainers = _setup(args)

    def step(name):
        def run():
            encoder.zero_grad(set_to_none=True)
            trainers[name].training_step(encoder, batch)

        return run

    times = alternate({name: step(name) for name in trainers}, rounds=args.rounds)
    plain, cached = median(times["plain"]), median(times["grad_cache"])
    print(f"plain step      : {plain * 1000:.0f} ms (spread {spread(times['plain'])})")
    print(f"GradCache step  : {cached * 1000:.0f} ms (spread {spread(times['grad_cache'])})")
    print(f"ratio GradCache/plain: {cached / plain:.2f}  (target <= 1.4)")


def run_worker(args) -> None:
    """One training step of one kind; prints peak RSS before and after, in MiB."""
    encoder, batch, trainers = _setup(args)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trainers[args.worker].training_step(encoder, batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"loaded_mib": loaded, "peak_mib": peak}))


def run_memory(args) -> None:
    results = {}
    for kind in ("plain", "grad_cache"):
        cmd = [sys.executable, __file__, "worker", "--worker", kind]
        for flag in ("batch", "group", "chunk", "query_len", "passage_len"):
            cmd += [f"--{flag}", str(getattr(args, flag))]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[kind]
        print(
            f"{kind:<11}: peak RSS {r['peak_mib']:.0f} MiB "
            f"(model and batch loaded: {r['loaded_mib']:.0f} MiB, step adds {r['peak_mib'] - r['loaded_mib']:.0f} MiB)"
        )
    ratio = results["grad_cache"]["peak_mib"] / results["plain"]["peak_mib"]
    print(f"peak ratio GradCache/plain: {ratio:.2f}  (target <= 0.33)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["time", "memory", "worker"])
    parser.add_argument("--worker", choices=["plain", "grad_cache"], default="plain")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--query_len", type=int, default=32)
    parser.add_argument("--passage_len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.chunk, args.rounds, args.passage_len = 8, 4, 2, 32
    if args.mode != "worker":
        header(f"GradCache {args.mode}", args)
    {"time": run_time, "memory": run_memory, "worker": run_worker}[args.mode](args)


if __name__ == "__main__":
    main()
