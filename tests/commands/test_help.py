"""Every flag of every command explains itself in ``--help`` (issue 20, item 3).

Each command's parser is built as ``densekit <command> --help`` builds it; every action but
``-h`` must carry a help line (peer flags say whose name they are), and descriptions are plain
text (no reStructuredText backticks). Hidden flags are allowed only for the training flags that
``densekit encode`` accepts for Tevatron's sake, which its epilog names.
"""

from __future__ import annotations

import argparse
import importlib

import pytest

from densekit.commands import COMMANDS, module_name
from densekit.compat.apply import DEST

HIDDEN_OK = DEST + "train__"  # encode's hidden training flags (the epilog documents them)


def _parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(module_name(command))
    return module.build_parser()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_has_help(command):
    parser = _parser(command)
    missing = []
    for action in parser._actions:
        if action.dest == "help":
            continue
        if action.help == argparse.SUPPRESS and action.dest.startswith(HIDDEN_OK):
            continue
        if not isinstance(action.help, str) or not action.help.strip():
            missing.append("/".join(action.option_strings) or action.dest)
        elif action.help == argparse.SUPPRESS:
            missing.append(f"{'/'.join(action.option_strings)} (hidden)")
    assert not missing, f"densekit {command}: flags without help: {', '.join(missing)}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_description_is_plain_text(command):
    parser = _parser(command)
    assert parser.description and parser.description.strip(), command
    assert "`" not in parser.description, parser.description
    parser.format_help()  # every help string formats (no stray %)


def test_recipe_help_explains_the_stages():
    text = _parser("recipe").format_help()
    for words in ("BM25", "Mine", "fine-tune", "35 min", "--quick", "AVX2", "(default: 2.0)"):
        assert words in text, words


def test_mine_choices_match_the_library():
    from densekit.commands import mine as command
    from densekit.retrieval import mine

    assert command.OUTPUT_FORMATS == mine.OUTPUT_FORMATS
    assert command.SAMPLES == mine.SAMPLES


def test_light_choices_match_the_library():
    """Choices copied into command modules (so --help loads no torch or faiss) stay in step."""
    from densekit.commands import export, index, search, train_reranker
    from densekit.inference import backends
    from densekit.modeling import reranker, reranker_losses
    from densekit.retrieval.index import PRESETS

    assert index.PRESETS == search.PRESETS == PRESETS
    assert (export.FORMATS, export.QUANTIZATIONS) == (backends.FORMATS, backends.QUANTIZATIONS)
    assert tuple(reranker_losses.RERANKER_LOSSES) == train_reranker.LOSSES
    assert tuple(reranker_losses.ALIASES) == train_reranker.LOSS_ALIASES
    assert tuple(reranker.ACTIVATIONS) == train_reranker.ACTIVATIONS


def test_encode_backends_match_the_registry():
    from densekit.commands._encode_flags import BUILTIN_BACKENDS
    from densekit.encoders.registry import _BACKENDS

    assert set(BUILTIN_BACKENDS) <= set(_BACKENDS)
