"""A model card (``README.md`` with the YAML header the Hugging Face hub reads) for every
trained model folder: what it was trained from and on, how, how well, and how to load it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from densekit.atomic import atomic_open

CARD_FILE = "README.md"


_RETRIEVER_TAGS = ["densekit", "dense-retrieval", "sentence-transformers", "feature-extraction"]
_RERANKER_TAGS = ["densekit", "reranker", "cross-encoder", "sentence-transformers", "text-ranking"]


def _front_matter(
    base_model: str,
    metrics: Mapping[str, float],
    pipeline_tag: str = "sentence-similarity",
    tags: list[str] | None = None,
    name: str = "densekit retriever",
    task: str = "retrieval",
) -> dict[str, Any]:
    header: dict[str, Any] = {
        "library_name": "densekit",
        "pipeline_tag": pipeline_tag,
        "tags": list(tags or _RETRIEVER_TAGS),
    }
    if base_model and not Path(base_model).exists():
        header["base_model"] = base_model  # a hub id; a local path means nothing to the hub
    if metrics:
        header["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": task},
                        "metrics": [
                            {"type": name, "value": round(float(v), 6)}
                            for name, v in metrics.items()
                        ],
                    }
                ],
            }
        ]
    return header


def _parts(
    front: Mapping[str, Any], hyperparameters: Mapping[str, Any], metrics: Mapping[str, float]
) -> tuple[str, str, str]:
    """The YAML header, the hyper-parameter rows and the metric rows both cards share."""
    header = yaml.safe_dump(dict(front), sort_keys=False).strip()
    rows = "\n".join(f"| {k} | {v} |" for k, v in hyperparameters.items())
    results = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items()) or "| (none) | |"
    return header, rows, results


def write_model_card(
    folder: str | Path,
    base_model: str,
    data: str,
    loss: str,
    hyperparameters: Mapping[str, Any],
    metrics: Mapping[str, float],
    settings: Mapping[str, Any],
) -> None:
    """Write ``README.md`` into ``folder``; ``metrics`` may be empty (no evaluation ran)."""
    header, rows, results = _parts(_front_matter(base_model, metrics), hyperparameters, metrics)
    text = f"""---
{header}
---

# Dense retriever trained with densekit

- base model: `{base_model}`
- training data: `{data}`
- loss: `{loss}`
- pooling `{settings.get("pooling")}`, normalized `{settings.get("normalize")}`, query prefix
  `{settings.get("query_prefix")!r}`, passage prefix `{settings.get("passage_prefix")!r}`,
  lengths {settings.get("query_max_len")}/{settings.get("passage_max_len")}

## Use

```python
from densekit import DenseEncoder
encoder = DenseEncoder.from_pretrained("path/to/this/folder")
```

```bash
densekit encode --model_name_or_path path/to/this/folder --dataset_path corpus.jsonl --encode_output_path emb
```

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("path/to/this/folder")
queries = model.encode_query(["a question"])
passages = model.encode_document(["a passage"])
```

## Training hyper-parameters

| name | value |
|---|---|
{rows}

## Evaluation

| metric | value |
|---|---|
{results}
"""
    with atomic_open(Path(folder) / CARD_FILE, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_reranker_card(
    folder: str | Path,
    base_model: str,
    data: str,
    loss: str,
    hyperparameters: Mapping[str, Any],
    metrics: Mapping[str, float],
    settings: Mapping[str, Any],
    selection: str | None = None,
) -> None:
    """A cross-encoder's ``README.md``; ``metrics`` are the dev metrics of the kept weights
    (reranking a first stage's top hits), ``selection`` says which evaluation they are."""
    front = _front_matter(
        base_model,
        metrics,
        pipeline_tag="text-ranking",
        tags=_RERANKER_TAGS,
        name="densekit reranker",
        task="reranking",
    )
    header, rows, results = _parts(front, hyperparameters, metrics)
    chosen = f"\nKept: {selection}.\n" if selection else ""
    text = f"""---
{header}
---

# Cross-encoder reranker trained with densekit

- base model: `{base_model}`
- training data: `{data}`
- loss: `{loss}`
- max length {settings.get("max_len")} tokens per (query, passage) pair, activation
  `{settings.get("activation")}`, query prefix `{settings.get("query_prefix")!r}`, passage
  prefix `{settings.get("passage_prefix")!r}`

## Use

```python
from densekit.modeling.reranker import CrossEncoderReranker
reranker = CrossEncoderReranker.from_pretrained("path/to/this/folder")
scores = reranker.score(["a question"], ["a passage"])
```

```bash
densekit rerank --model path/to/this/folder --run first.trec --corpus corpus.jsonl --queries queries.jsonl --save_ranking_to reranked.trec
```

```python
from sentence_transformers import CrossEncoder
model = CrossEncoder("path/to/this/folder")
scores = model.predict([("a question", "a passage")])
```

## Training hyper-parameters

| name | value |
|---|---|
{rows}

## Evaluation (dev, reranking the first stage's top hits)
{chosen}
| metric | value |
|---|---|
{results}
"""
    with atomic_open(Path(folder) / CARD_FILE, "w", encoding="utf-8") as handle:
        handle.write(text)


def read_front_matter(path: str | Path) -> dict[str, Any]:
    """The YAML header of a model card (what the hub parses)."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    return yaml.safe_load(text.split("---\n", 2)[1]) or {}
