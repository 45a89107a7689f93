"""A tiny synthetic BEIR folder: queries share a topic word with their relevant passages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOPICS = ["kinase", "protein", "vaccine", "neuron", "tumor", "insulin", "virus", "enzyme"]


def make_beir(folder: Path, dev: bool, test: bool) -> Path:
    """40 queries over 80 passages; 24 train (+8 dev, +8 test when asked)."""
    (folder / "qrels").mkdir(parents=True)
    docs = [
        {
            "_id": f"d{i}",
            "title": f"{TOPICS[i % 8]} study {i}",
            "text": f"about {TOPICS[i % 8]} {i}",
        }
        for i in range(80)
    ]
    queries = [{"_id": f"q{i}", "text": f"what about {TOPICS[i % 8]} {i}"} for i in range(40)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    splits = {"train": range(24), "dev": range(24, 32), "test": range(32, 40)}
    if not dev:
        splits["train"] = range(32)
    for name, ids in splits.items():
        if (name == "dev" and not dev) or (name == "test" and not test):
            continue
        lines = [f"q{i}\td{i}\t1\n" for i in ids] + [f"q{i}\td{i + 40}\t1\n" for i in ids]
        (folder / "qrels" / f"{name}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(lines)
        )
    return folder


@pytest.fixture
def beir_folder(tmp_path):
    return lambda dev=True, test=True: make_beir(tmp_path / "beir", dev, test)
