"""The SciFact recipe on a small slice, and the dev split it ships."""

from __future__ import annotations

import json
import shutil

from densekit.data.qrels import load_qrels
from densekit.modeling.encoder import DenseEncoder
from densekit.recipes.scifact import RecipeConfig, format_results, run_scifact, split_qrels


def test_split_reproduces_the_shipped_dev_split(scifact_dir):
    train, dev = split_qrels(load_qrels(scifact_dir / "qrels" / "train.tsv"), 200, 2026)
    assert dev == load_qrels(scifact_dir / "qrels" / "dev.tsv")
    assert train == load_qrels(scifact_dir / "qrels" / "train-split.tsv")
    assert not set(train) & set(dev)


def test_recipe_on_a_slice(tiny_model, scifact_dir, tmp_path):
    data = tmp_path / "data"
    (data / "qrels").mkdir(parents=True)
    qrels_lines = (scifact_dir / "qrels" / "train.tsv").read_text().splitlines()
    rows = [line.split("\t") for line in qrels_lines[1:61]]
    keep = {r[1] for r in rows}
    docs = [json.loads(line) for line in (scifact_dir / "corpus.jsonl").open()]
    chosen = [d for d in docs if d["_id"] in keep] + [d for d in docs if d["_id"] not in keep][:150]
    (data / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in chosen))
    shutil.copy(scifact_dir / "queries.jsonl", data / "queries.jsonl")
    (data / "qrels" / "train.tsv").write_text(
        qrels_lines[0] + "\n" + "".join("\t".join(r) + "\n" for r in rows)
    )
    out = tmp_path / "out"
    config = RecipeConfig(
        data_dir=data,
        output_dir=out,
        model=tiny_model,
        dev_size=10,
        epochs=1,
        batch_size=8,
        passage_max_len=64,
        negatives=3,
        mine_range=(0, 20),
    )
    results = run_scifact(config)
    assert list(results) == ["bm25", "zero-shot", "fine-tuned"]
    for values in results.values():
        assert 0.0 <= values["ndcg@10"] <= 1.0 and values["seconds"] >= 0
    for system in results:
        assert (out / "runs" / f"{system}.dev.trec").is_file()
    assert (out / "results.md").read_text().strip() == format_results(results)
    saved = json.loads((out / "results.json").read_text())
    assert saved["dev_queries"] == 10
    DenseEncoder.from_pretrained(str(out / "model"))  # the fine-tuned model reloads
    train_rows = [json.loads(line) for line in (out / "train.mined.jsonl").open()]
    dev = set(split_qrels(load_qrels(data / "qrels" / "train.tsv"), 10, 2026)[1])
    assert train_rows and not {r["query_id"] for r in train_rows} & dev
