"""What densekit ships is found through the package, not the source tree's layout."""

from __future__ import annotations

from pathlib import Path

import pytest

import densekit
from densekit.resources import bundled_data_dir, bundled_model_path, looks_local


def test_bundled_data_lives_inside_the_package():
    folder = bundled_data_dir("scifact")
    assert folder.is_relative_to(Path(densekit.__file__).parent)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv"):
        assert (folder / name).is_file(), name


def test_pyproject_ships_the_bundled_data_as_package_data():
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    for pattern in ("bundled_data/scifact/*.jsonl", "bundled_data/scifact/qrels/*.tsv"):
        assert pattern in pyproject


def test_bundled_model_folder_exists():
    assert (Path(bundled_model_path()) / "config.json").is_file()


@pytest.mark.parametrize(
    ("name", "local"),
    [("./model", True), ("/abs/path", True), ("runs/a/b", True), ("corpus.jsonl", True),
     ("bert-base-uncased", False), ("BAAI/bge-small-en", False)],
)  # fmt: skip
def test_local_looking_names(name, local):
    assert looks_local(name) is local
