"""The recipe's view of a BEIR folder: shipped SciFact split, dev carving, id checks."""

from __future__ import annotations

import pytest

from densekit.data.qrels import load_qrels
from densekit.errors import ConfigError, DataError
from densekit.recipes.config import RecipeConfig
from densekit.recipes.data import load_data, split_qrels


def test_split_reproduces_the_shipped_dev_split(scifact_dir):
    train, dev = split_qrels(load_qrels(scifact_dir / "qrels" / "train.tsv"), 200, 2026)
    assert dev == load_qrels(scifact_dir / "qrels" / "dev.tsv")
    assert train == load_qrels(scifact_dir / "qrels" / "train-split.tsv")
    assert not set(train) & set(dev)


def test_dev_file_is_used_when_present_and_carved_otherwise(beir_folder):
    with_dev = load_data(RecipeConfig(data_dir=str(beir_folder(dev=True))))
    assert sorted(with_dev.dev_qrels) == sorted(f"q{i}" for i in range(24, 32))
    assert len(with_dev.train_qrels) == 24 and with_dev.test_qrels_path.name == "test.tsv"


def test_dev_queries_never_train_even_when_train_tsv_lists_them(scifact_dir):
    data = load_data(RecipeConfig(data_dir=str(scifact_dir)))
    assert not set(data.train_qrels) & set(data.dev_qrels)
    assert data.train_qrels == load_qrels(scifact_dir / "qrels" / "train-split.tsv")
    assert len(data.dev_qrels) == 200


def test_dev_carved_from_train_by_seed(beir_folder):
    folder = beir_folder(dev=False, test=False)
    data = load_data(RecipeConfig(data_dir=str(folder), dev_size=6, seed=3))
    train, dev = split_qrels(load_qrels(folder / "qrels/train.tsv"), 6, 3)
    assert data.dev_qrels == dev and data.train_qrels == train
    assert data.test_qrels_path is None


def test_bad_folders_are_one_error(beir_folder, tmp_path):
    with pytest.raises(ConfigError, match=r"corpus\.jsonl is missing"):
        load_data(RecipeConfig(data_dir=str(tmp_path)))
    folder = beir_folder()
    with open(folder / "qrels/dev.tsv", "a") as handle:
        handle.write("q99\td1\t1\n")
    with pytest.raises(DataError, match=r"query id 'q99' is not in queries\.jsonl"):
        load_data(RecipeConfig(data_dir=str(folder)))
    with open(folder / "qrels/train.tsv", "a") as handle:
        handle.write("q1\tnope\t1\n")
    with pytest.raises(DataError, match=r"document id 'nope' is not in corpus\.jsonl"):
        load_data(RecipeConfig(data_dir=str(folder)))
