"""Every command is reachable as ``densekit <cmd>`` and ``python -m``; the library never imports
a command."""

from __future__ import annotations

import ast
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from densekit.commands import COMMANDS, main, module_name

SRC = Path(__file__).resolve().parents[2] / "src" / "densekit"
ENTRY_POINTS = {"commands", "train.py", "encode.py", "jax_train.py", "jax_encode.py", "__main__.py"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_dispatcher_shows_each_commands_help(command, capsys):
    try:
        code = main([command, "--help"])
    except SystemExit as stop:  # argparse exits after printing help
        code = stop.code
    assert code == 0
    assert "usage:" in capsys.readouterr().out


MODULES = [module_name(c) for c in sorted(COMMANDS)]
MODULES += ["densekit.train", "densekit.encode", "densekit.jax_train", "densekit.jax_encode"]


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", MODULES)
def test_every_module_runs_as_main(module, capsys, monkeypatch):
    """What ``python -m <module> --help`` runs, in this process: a fresh interpreter per module
    costs ~3 s of imports each; the fresh-interpreter path is the next test's and torchrun's."""
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_console_script_and_python_dash_m_densekit():
    script = Path(sys.executable).with_name("densekit")
    for cmd in ([str(script), "losses"], [sys.executable, "-m", "densekit", "losses"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-500:]
        assert "infonce" in done.stdout and "matryoshka" in done.stdout


def test_unknown_command_is_one_error(capsys):
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_library_module_imports_a_command():
    library = [p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in ENTRY_POINTS]
    assert len(library) > 20
    offenders = {
        str(p.relative_to(SRC)): sorted(n for n in _imports(p) if n.startswith("densekit.commands"))
        for p in library
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_modeling_does_not_import_the_argument_layer():
    for path in (SRC / "modeling").rglob("*.py"):
        assert "densekit.arguments" not in _imports(path), path.name


def test_encoder_does_not_depend_on_its_factory():
    assert not any("factory" in name for name in _imports(SRC / "modeling" / "encoder.py"))
