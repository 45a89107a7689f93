"""Peak memory of ``densekit encode`` against corpus size: it must stay flat (target <= 1.3x).

A synthetic corpus of short passages (seeded word salad, ~12 words + a 3-word title) is encoded
by a tiny random BERT (2 layers, hidden 32, the bundled MiniLM tokenizer) at each size, each run
in a fresh ``python -m densekit.encode`` process. For every run the script reports:

  peak RSS      ``ru_maxrss`` of the process (``os.wait4``): what ``/usr/bin/time -v`` prints;
                it counts the pages of memory-mapped files (Arrow cache, output) it touched
  peak anon     the largest ``RssAnon`` sampled from ``/proc/<pid>/status`` every 50 ms: the
                memory the process itself holds (heap, tensors, Python objects)

Each size is converted to the Arrow cache first in a separate process (``load_corpus``, whose
peak is printed too), so the encode runs measure encoding; the cache folder is private to the run.

    .venv/bin/python bench/encode_memory.py                        # 200k and 2M passages
    .venv/bin/python bench/encode_memory.py --sizes 20000 200000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common  # noqa: F401  (environment first)
from _common import ROOT, header, model_path

PY = sys.executable


def make_model(folder: Path) -> str:
    """A random 2-layer BERT of width 32 with the bundled tokenizer (plain HF folder)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def make_corpus(path: Path, count: int, seed: int = 0) -> None:
    """``count`` BEIR-style rows; words drawn from a fixed list, lengths 6..18 words."""
    rng = random.Random(seed)
    words = [f"{a}{b}" for a in ("re", "pro", "trans", "bio", "neo", "sub") for b in WORDS]
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(count):
            title = " ".join(rng.choices(words, k=3))
            text = " ".join(rng.choices(words, k=rng.randint(6, 18)))
            handle.write(json.dumps({"_id": f"d{i}", "title": title, "text": text}) + "\n")


WORDS = [
    "cell",
    "gene",
    "protein",
    "tissue",
    "model",
    "signal",
    "immune",
    "receptor",
    "growth",
    "factor",
    "dose",
    "trial",
    "patient",
    "cohort",
    "risk",
    "rate",
    "level",
    "change",
    "effect",
    "response",
    "pathway",
    "membrane",
    "kinase",
    "binding",
    "structure",
    "function",
    "network",
    "analysis",
    "method",
    "result",
    "sample",
]


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``; its wall time, ``ru_maxrss`` (MiB) and the peak sampled RssAnon (MiB)."""
    start = time.perf_counter()
    peak_anon = [0]
    done = threading.Event()
    # stderr goes to a file, not a pipe: a full pipe would block the child
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)

        def sample() -> None:
            status = Path(f"/proc/{proc.pid}/status")
            while not done.is_set():
                try:
                    for line in status.read_text().splitlines():
                        if line.startswith("RssAnon:"):
                            peak_anon[0] = max(peak_anon[0], int(line.split()[1]))
                except OSError:
                    return
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        log.seek(0)
        err = log.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}\n{err[-2000:]}")
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss": usage.ru_maxrss / 1024,
        "peak_anon": peak_anon[0] / 1024,
    }


CONVERT = (
    "import sys; from densekit.data.readers import load_corpus; "
    "print(len(load_corpus(sys.argv[1])))"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[200_000, 2_000_000])
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--workdir", default=None, help="default: a temporary folder, removed after")
    p.add_argument(
        "--src",
        default=str(ROOT / "src"),
        help="densekit source folder to measure (e.g. an older commit from git archive)",
    )
    p.add_argument("--threads", type=int, default=1, help="OMP/torch threads of the encode runs")
    args = p.parse_args()
    header("encode peak memory vs corpus size (tiny BERT, 2 layers, hidden 32)", args)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp_name:
        tmp = Path(tmp_name)
        model = make_model(tmp / "model")
        env = {
            **os.environ,
            "HF_DATASETS_CACHE": str(tmp / "cache"),
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": str(args.threads),
            "PYTHONPATH": args.src,
        }
        rows = []
        for size in args.sizes:
            corpus = tmp / f"corpus-{size}.jsonl"
            make_corpus(corpus, size)
            convert = measure([PY, "-c", CONVERT, str(corpus)], env)
            out = tmp / f"out-{size}"
            cmd = [PY, "-m", "densekit.encode", "--model_name_or_path", model]
            cmd += ["--dataset_path", str(corpus), "--encode_output_path", str(out)]
            cmd += ["--batch_size", str(args.batch_size)]
            encode = measure(cmd, env)
            rows.append((size, convert, encode))
            print(
                f"  {size:>9,} passages: convert {convert['seconds']:.0f}s peak RSS "
                f"{convert['peak_rss']:.0f} MiB | encode {encode['seconds']:.0f}s peak RSS "
                f"{encode['peak_rss']:.0f} MiB, peak anon {encode['peak_anon']:.0f} MiB",
                flush=True,
            )
            corpus.unlink()
            subprocess.run(["rm", "-rf", str(out)], check=True)
    print()
    print("| passages | encode s | passages/s | peak RSS MiB | peak anon MiB | convert peak MiB |")
    print("|---|---|---|---|---|---|")
    for size, convert, encode in rows:
        print(
            f"| {size:,} | {encode['seconds']:.0f} | {size / encode['seconds']:,.0f} | "
            f"{encode['peak_rss']:.0f} | {encode['peak_anon']:.0f} | {convert['peak_rss']:.0f} |"
        )
    first, last = rows[0][2], rows[-1][2]
    print(
        f"ratio {rows[-1][0]:,} / {rows[0][0]:,}: peak RSS {last['peak_rss'] / first['peak_rss']:.2f}"
        f", peak anon {last['peak_anon'] / first['peak_anon']:.2f} (target <= 1.3)"
    )


if __name__ == "__main__":
    main()
