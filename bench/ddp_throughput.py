"""Training throughput of 2 processes (torchrun, gloo, cross-device negatives) against 1 process
with the same global batch, through ``densekit train`` on the bundled MiniLM.

    python bench/ddp_throughput.py --steps 12 --global_batch 16

Both runs do the same work per step; the ratio says what a second process buys on this
machine (2 cores: each process gets one, so expect little or nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import DATA, header, model_path


def _train_file(rows: int) -> str:
    """Tevatron-style rows from SciFact qrels with random negatives (enough for the steps)."""
    import random

    corpus = [json.loads(line) for line in (DATA / "corpus.jsonl").open()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (DATA / "queries.jsonl").open())}
    by_id = {d["_id"]: d for d in corpus}
    lines = (DATA / "qrels" / "train.tsv").read_text().splitlines()[1:]
    pairs = [line.split("\t")[:2] for line in lines if line.strip()]
    rng = random.Random(0)
    path = Path(tempfile.mkdtemp()) / "train.jsonl"
    with path.open("w") as handle:
        for qid, docid in pairs[:rows]:
            negs = rng.sample(corpus, 3)
            handle.write(
                json.dumps(
                    {
                        "query_id": f"{qid}-{docid}",
                        "query": queries[qid],
                        "positive_passages": [by_id[docid]],
                        "negative_passages": [{"docid": d["_id"], **d} for d in negs],
                    }
                )
                + "\n"
            )
    return str(path)


def _runtime(output: str) -> float:
    found = re.findall(r"'train_runtime': '([0-9.]+)'", output)
    if not found:
        raise SystemExit(output[-3000:])
    return float(found[-1])


def _run(procs: int, per_device: int, args, data: str) -> float:
    out = tempfile.mkdtemp()
    flags = [
        "--model_name_or_path", model_path(), "--dataset_path", data, "--output_dir", out,
        "--overwrite_output_dir", "--per_device_train_batch_size", str(per_device),
        "--train_group_size", "4", "--passage_max_len", "128", "--query_max_len", "32",
        "--max_steps", str(args.steps), "--save_strategy", "no", "--logging_steps", "1000",
        "--negatives_cross_device", "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if procs == 1:
        cmd = [sys.executable, "-m", "densekit.train", *flags]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // procs))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = str(sock.getsockname()[1])
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
            "--master_addr", "127.0.0.1", "--master_port", port, "-m", "densekit.train", *flags,
        ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return _runtime(done.stdout + done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--global_batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.global_batch, args.rounds = 2, 4, 1
    header("2 processes vs 1 (densekit train)", args)
    data = _train_file(args.steps * args.global_batch + args.global_batch)
    one, two = [], []
    for _ in range(args.rounds):
        one.append(_run(1, args.global_batch, args, data))
        two.append(_run(2, args.global_batch // 2, args, data))
        print(f"  1 process {one[-1]:.1f}s, 2 processes {two[-1]:.1f}s", flush=True)
    queries = args.steps * args.global_batch
    best_one, best_two = min(one), min(two)
    print(f"1 process  : {queries / best_one:.2f} queries/s")
    print(f"2 processes: {queries / best_two:.2f} queries/s")
    print(f"speed-up 2/1: {best_one / best_two:.2f}")


if __name__ == "__main__":
    main()
