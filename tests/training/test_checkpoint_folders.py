"""Incomplete checkpoints (a run killed while saving) are skipped and named, never loaded."""

from __future__ import annotations

import json
import logging

import pytest

from densekit.errors import ConfigError
from densekit.evaluation.checkpoints import model_folders
from densekit.training.checkpoints import has_model, is_resumable, resume_point


def _checkpoint(folder, step, weights=True, state=True):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "densekit_config.json").write_text("{}")
    if weights:
        (path / "model.safetensors").write_bytes(b"x")
    if state:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_resume_skips_incomplete_checkpoints_and_names_them(tmp_path, caplog):
    _checkpoint(tmp_path, 5)
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 15, weights=False)  # killed while writing
    with caplog.at_level(logging.WARNING):
        chosen = resume_point("True", str(tmp_path))
    assert chosen.endswith("checkpoint-10")
    assert "checkpoint-15" in caplog.text
    assert resume_point(str(tmp_path), "elsewhere").endswith("checkpoint-10")
    assert resume_point(None, str(tmp_path)) is None


def test_resume_with_only_incomplete_checkpoints_is_one_error(tmp_path):
    _checkpoint(tmp_path, 3, state=False)
    with pytest.raises(ConfigError, match=r"every checkpoint.*incomplete.*checkpoint-3"):
        resume_point(True, str(tmp_path))
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        resume_point(True, str(tmp_path / "none"))


def test_evaluation_needs_weights_not_trainer_state(tmp_path):
    done = _checkpoint(tmp_path, 2, state=False)
    half = _checkpoint(tmp_path, 4, weights=False)
    assert has_model(done) and not is_resumable(done) and not has_model(half)
    folders, skipped = model_folders(tmp_path)
    assert folders == [done] and skipped == ["checkpoint-4"]
