"""Every command line of densekit, one small module each, over the library below.

``densekit <command>`` dispatches here; each module also runs as ``python -m
densekit.commands.<module>`` (``python -m densekit.train`` / ``densekit.encode`` stay for
launchers such as torchrun, accelerate and deepspeed). Library modules never import this package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from densekit.errors import DensekitError

# command name -> (module under densekit.commands, one-line description)
COMMANDS = {
    "train": ("train", "train a bi-encoder (Tevatron/PaddleNLP/FlagEmbedding flags)"),
    "encode": ("encode", "embed queries or a corpus into .npy + ids"),
    "index": ("index", "build and save a FAISS index over passage vectors"),
    "search": ("search", "FAISS search of query vectors over passage vectors"),
    "merge-runs": ("merge_runs", "merge runs of passage shards searched apart (exact top-k)"),
    "evaluate": ("evaluate", "run + qrels -> nDCG, MRR, recall, MAP, P"),
    "evaluate-checkpoints": (
        "evaluate_checkpoints",
        "score every checkpoint of a run (PaddleNLP --evaluate_all)",
    ),
    "bm25": ("bm25", "BM25 baseline run with bm25s"),
    "mine": ("mine", "hard negatives from a run into a training file"),
    "recipe": ("recipe", "end-to-end recipes (scifact)"),
    "losses": ("losses", "list the registered losses"),
    "merge-lora": ("merge_lora", "merge a LoRA checkpoint into a full model"),
    "compare": ("compare", "paired significance tests between runs (t-test, randomization, Holm)"),
    "fuse": ("fuse", "combine runs: reciprocal rank or weighted score fusion"),
    "convert": ("convert", "Tevatron's pickled embeddings / pre-tokenised jsonl -> densekit's"),
    "jax-train": ("jax_train", "train on the JAX path (TPU/GPU/CPU; densekit[jax])"),
    "jax-encode": ("jax_encode", "densekit encode on the JAX path (densekit[jax])"),
    "export": ("export", "export a model once for ONNX Runtime / OpenVINO (fp32 or int8)"),
    "train-reranker": ("train_reranker", "train a cross-encoder reranker (listwise/bce/distill)"),
    "rerank": ("rerank", "rerank a run's top hits with a cross-encoder"),
    "serve": ("serve", "BM25/dense/hybrid search over HTTP with a results page (densekit[serve])"),
}


def module_name(command: str) -> str:
    """The importable module of ``command`` (``python -m`` takes this name)."""
    return f"densekit.commands.{COMMANDS[command][0]}"


def run_guarded(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; a DensekitError becomes one line on stderr and its exit code."""
    try:
        return main(argv) or 0
    except DensekitError as exc:
        print(f"densekit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("densekit: interrupted", file=sys.stderr)
        return 130


def _usage() -> str:
    lines = ["usage: densekit <command> [flags]   (densekit <command> --help)", "", "commands:"]
    lines += [f"  {name:<20} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``densekit <command> [flags]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"densekit: error: unknown command {command!r}\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(module_name(command))
    return run_guarded(module.main, rest)
