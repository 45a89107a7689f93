"""Outputs appear whole or not at all, and never destroy what densekit did not write."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from densekit.atomic import atomic_open, atomic_path, check_target, remove_stale_temporaries
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


def test_overwrite_keeps_what_the_user_added(tmp_path):
    target = tmp_path / "vectors"
    with atomic_path(target, folder=True) as tmp:
        tmp.mkdir()
        (tmp / "meta.json").write_text(json.dumps({"writer": "densekit"}))
        (tmp / "data.txt").write_text("old")
    (target / "notes.txt").write_text("the user's notes")
    with atomic_path(target, folder=True, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "meta.json").write_text(json.dumps({"writer": "densekit"}))
        (tmp / "data.txt").write_text("new")
    assert (target / "data.txt").read_text() == "new"
    assert (target / "notes.txt").read_text() == "the user's notes"


def test_overwrite_of_an_unlisted_folder_refuses_rather_than_guess(tmp_path):
    target = _own_folder(tmp_path / "vectors")  # no list of its entries: an older densekit's
    (target / "notes.txt").write_text("the user's notes")
    with (
        pytest.raises(ConfigError, match=r"notes\.txt"),
        atomic_path(target, folder=True, overwrite=True) as tmp,
    ):
        tmp.mkdir()
        (tmp / "data.txt").write_text("new")
    assert (target / "notes.txt").read_text() == "the user's notes"
    assert (target / "data.txt").read_text() == "old"


def test_parent_that_is_a_file_or_unwritable_is_one_config_error(tmp_path, monkeypatch):
    import tempfile

    (tmp_path / "file").write_text("x")
    for folder in (False, True):
        with pytest.raises(ConfigError, match="is a file, not a folder"):
            check_target(tmp_path / "file" / "a" / "out", folder=folder)
    real = tempfile.mkdtemp
    monkeypatch.setattr(
        tempfile,
        "mkdtemp",
        lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")),
    )
    with pytest.raises(ConfigError, match="Permission denied"), atomic_open(tmp_path / "o") as h:
        h.write("x")
    monkeypatch.setattr(tempfile, "mkdtemp", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_temporaries_of_a_killed_process_are_removed_by_the_next_write(tmp_path):
    import subprocess

    from densekit.atomic import _owner_tag

    dead = subprocess.Popen(["true"])
    dead.wait()
    host = _owner_tag().rsplit("-", 1)[0]
    stale = tmp_path / f".vectors.{host}-{dead.pid}.abc123.tmp"
    stale.mkdir()
    (stale / "embeddings.npy").write_text("half")
    other_host = tmp_path / f".vectors.elsewhere-{dead.pid}.abc123.tmp"  # maybe alive there
    other_host.mkdir()
    live = tmp_path / f".vectors.{host}-{os.getpid()}.def456.tmp"
    live.mkdir()
    with atomic_path(tmp_path / "vectors", folder=True) as tmp:
        tmp.mkdir()
    assert not stale.exists() and other_host.exists() and live.exists()
    # killed between moving the old output aside and the new one in: the old one is put back
    shutil.rmtree(tmp_path / "vectors")
    aside = tmp_path / f".vectors.{host}-{dead.pid}.ghi789.old"
    aside.mkdir()
    _own_folder(aside / "replaced")
    with pytest.raises(ConfigError, match="--overwrite"), atomic_path(tmp_path / "vectors", True):
        pass
    remove_stale_temporaries(tmp_path / "vectors")
    assert (tmp_path / "vectors" / "data.txt").read_text() == "old" and not aside.exists()
