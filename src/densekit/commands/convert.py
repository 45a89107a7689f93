"""``densekit convert``: Tevatron's files into densekit's: pickled embeddings, pre-tokenised jsonl.

Pickled embeddings ``(reps, lookup)`` are read by a restricted unpickler (numpy arrays and id
lists only; nothing in the file runs). One pickle becomes one embedding folder; several (a
quoted glob, e.g. Tevatron's ``corpus.*.pkl`` shards) become ``shard-*`` folders under
``--output``, which ``densekit search --passage_reps`` reads as one corpus. A pre-tokenised
Tevatron v1 jsonl (token ids) becomes text jsonl with ``--tokenizer`` (the model's).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

from densekit.atomic import META_FILE, WRITER, atomic_path, check_target
from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.compat.tevatron_pickle import is_pickle, load_tevatron_pickle
from densekit.errors import ConfigError, DataError
from densekit.retrieval.embeddings import save_embeddings


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("densekit convert", __doc__)
    parser.add_argument(
        "--input", required=True, help="a Tevatron .pkl (or a quoted glob), or pre-tokenised jsonl"
    )
    parser.add_argument("--output", required=True, help="embedding folder, or jsonl file")
    parser.add_argument("--tokenizer", help="model folder whose tokenizer made the token ids")
    parser.add_argument("--encode_is_query", action="store_true", help="the vectors are queries")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier conversion")
    return parser


def _inputs(spec: str) -> list[str]:
    files = sorted(glob.glob(spec)) or ([spec] if Path(spec).exists() else [])
    if not files:
        raise DataError(spec, "no such file, and no file matches it as a glob")
    for path in files:
        if not is_pickle(path):
            raise DataError(path, "not a pickle file (Tevatron's embeddings are pickles)")
    return files


def _convert_tokens(args: argparse.Namespace) -> int:
    from densekit.data.pretokenized import convert_pretokenized
    from densekit.modeling.encoder import load_tokenizer

    if not args.tokenizer:
        raise ConfigError(f"{args.input} is jsonl: pass --tokenizer (the model that made its ids)")
    check_target(args.output, folder=False)
    report = convert_pretokenized(args.input, load_tokenizer(args.tokenizer), args.output)
    print(
        f"densekit convert: {report.records} records, {report.texts} texts to {args.output}; "
        f"{report.changed_by_round_trip} texts tokenize to other ids than the file's"
    )
    return 0


def _check_vectors(path: str, ids: list[str], reps) -> None:
    """Refuse a pickle with no vectors, or a vector holding NaN or infinity (search would
    rank it anywhere without a word)."""
    import numpy as np

    if reps.shape[0] == 0 or reps.shape[1] == 0:
        raise DataError(path, f"holds no embeddings (shape {tuple(reps.shape)})")
    finite = np.isfinite(reps).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise DataError(path, f"record {row + 1} (id {ids[row]!r}) has a NaN or infinite value")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.input.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        return _convert_tokens(args)
    files = _inputs(args.input)
    check_target(args.output, folder=True, overwrite=args.overwrite)
    loaded = [load_tevatron_pickle(path) for path in files]  # all checked before writing
    for path, (ids, reps) in zip(files, loaded, strict=True):
        _check_vectors(path, ids, reps)
    metas = [
        {"is_query": args.encode_is_query, "source": str(Path(path).resolve())} for path in files
    ]
    if len(files) == 1:
        save_embeddings(args.output, *loaded[0], metas[0], overwrite=args.overwrite)
    else:
        with atomic_path(args.output, folder=True, overwrite=args.overwrite) as tmp:
            tmp.mkdir()
            for index, ((ids, reps), meta) in enumerate(zip(loaded, metas, strict=True)):
                save_embeddings(tmp / f"shard-{index:05d}-of-{len(files):05d}", ids, reps, meta)
            summary = {"writer": WRITER, "shards": len(files), "converted_from": args.input}
            (tmp / META_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    for path, (ids, reps) in zip(files, loaded, strict=True):
        print(f"densekit convert: {path}: {len(ids)} vectors of dim {reps.shape[1]}")
    print(f"densekit convert: wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
