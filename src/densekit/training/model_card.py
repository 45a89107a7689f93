"""A model card (``README.md`` with the YAML header the Hugging Face hub reads) for every
trained model folder: what it was trained from and on, how, how well, and how to load it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from densekit.atomic import atomic_open

CARD_FILE = "README.md"


def _front_matter(base_model: str, metrics: Mapping[str, float]) -> dict[str, Any]:
    header: dict[str, Any] = {
        "library_name": "densekit",
        "pipeline_tag": "sentence-similarity",
        "tags": ["densekit", "dense-retrieval", "sentence-transformers", "feature-extraction"],
    }
    if base_model and not Path(base_model).exists():
        header["base_model"] = base_model  # a hub id; a local path means nothing to the hub
    if metrics:
        header["model-index"] = [
            {
                "name": "densekit retriever",
                "results": [
                    {
                        "task": {"type": "retrieval"},
                        "metrics": [
                            {"type": name, "value": round(float(v), 6)}
                            for name, v in metrics.items()
                        ],
                    }
                ],
            }
        ]
    return header


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
    header = yaml.safe_dump(_front_matter(base_model, metrics), sort_keys=False).strip()
    rows = "\n".join(f"| {k} | {v} |" for k, v in hyperparameters.items())
    results = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items()) or "| (none) | |"
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


def read_front_matter(path: str | Path) -> dict[str, Any]:
    """The YAML header of a model card (what the hub parses)."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    return yaml.safe_load(text.split("---\n", 2)[1]) or {}
