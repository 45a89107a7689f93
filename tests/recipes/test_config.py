"""Recipe settings: defaults, then a YAML/JSON file, then flags; unknown keys refused."""

from __future__ import annotations

import pytest

from densekit.commands.recipe import build_parser
from densekit.errors import ConfigError
from densekit.recipes.config import build_config


def test_file_then_flags(tmp_path):
    (tmp_path / "r.yaml").write_text("batch_size: 16\nlearning_rate: 1e-4\ngrad_cache: false\n")
    args = build_parser().parse_args(["--config", str(tmp_path / "r.yaml"), "--epochs", "3"])
    config = build_config(args)
    assert (config.batch_size, config.learning_rate, config.grad_cache) == (16, 1e-4, False)
    assert config.epochs == 3.0 and config.group_size == 2
    args = build_parser().parse_args(["--config", str(tmp_path / "r.yaml"), "--batch_size", "8"])
    assert build_config(args).batch_size == 8


def test_quoted_booleans_in_a_file_mean_what_they_say(tmp_path):
    (tmp_path / "r.json").write_text('{"grad_cache": "false", "symmetric_loss": "yes"}')
    config = build_config(build_parser().parse_args(["--config", str(tmp_path / "r.json")]))
    assert config.grad_cache is False and config.symmetric_loss is True


def test_unknown_setting_is_refused(tmp_path):
    (tmp_path / "r.json").write_text('{"batchsize": 16}')
    args = build_parser().parse_args(["--config", str(tmp_path / "r.json")])
    with pytest.raises(ConfigError, match=r"unknown recipe setting.*batchsize"):
        build_config(args)
