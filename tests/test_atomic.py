"""Outputs appear whole or not at all, and never destroy what densekit did not write."""

from __future__ import annotations

import json

import pytest

from densekit.atomic import atomic_open, atomic_path, check_target
from densekit.errors import ConfigError


def _own_folder(path, marker="old"):
    path.mkdir()
    (path / "meta.json").write_text(json.dumps({"writer": "densekit"}))
    (path / "data.txt").write_text(marker)
    return path


def test_foreign_folder_is_never_replaced(tmp_path):
    target = tmp_path / "photos"
    target.mkdir()
    (target / "holiday.jpg").write_text("precious")
    for overwrite in (False, True):
        with (
            pytest.raises(ConfigError, match="did not write"),
            atomic_path(target, folder=True, overwrite=overwrite) as tmp,
        ):
            tmp.mkdir()
    assert (target / "holiday.jpg").read_text() == "precious"


def test_folder_where_a_file_is_expected_is_refused(tmp_path):
    target = tmp_path / "run.trec"
    _own_folder(target)
    with pytest.raises(ConfigError, match="expected a file path"), atomic_open(target) as handle:
        handle.write("x")
    assert (target / "data.txt").read_text() == "old"


def test_own_output_replaced_only_when_asked(tmp_path):
    target = _own_folder(tmp_path / "vectors")
    with pytest.raises(ConfigError, match="--overwrite"):
        check_target(target, folder=True)
    with atomic_path(target, folder=True, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "data.txt").write_text("new")
    assert (target / "data.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors"]


def test_failure_leaves_the_old_output_and_no_temporary(tmp_path):
    target = _own_folder(tmp_path / "vectors")
    with (
        pytest.raises(RuntimeError),
        atomic_path(target, folder=True, overwrite=True) as tmp,
    ):
        tmp.mkdir()
        raise RuntimeError("killed half-way")
    assert (target / "data.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors"]


def test_empty_folder_and_files_are_replaceable(tmp_path):
    (tmp_path / "empty").mkdir()
    check_target(tmp_path / "empty", folder=True)
    (tmp_path / "run.trec").write_text("old")
    with atomic_open(tmp_path / "run.trec") as handle:
        handle.write("new")
    assert (tmp_path / "run.trec").read_text() == "new"
    with pytest.raises(ConfigError, match="is a file"):
        check_target(tmp_path / "run.trec", folder=True)
