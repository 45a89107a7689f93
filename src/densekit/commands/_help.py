"""What every command's ``--help`` shares: a plain-text description and each flag's default.

Not a command. Kept free of heavy imports: building a parser must not load torch,
transformers, datasets or faiss (tests/commands/test_startup.py holds that rule).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

_ROLE = re.compile(r":\w+:`([^`]*)`")  # :class:`X` -> X


def plain(text: str) -> str:
    """``text`` without reStructuredText markup (roles and backticks)."""
    return _ROLE.sub(r"\1", text).replace("`", "")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and adds ``(default: ...)`` to a flag's help.

    No default is shown where the help already names one, for a switch (off unless given) or
    where the default is ``None`` (not given: the help says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.default in (None, False, argparse.SUPPRESS)
            or action.nargs == 0
            or not (action.option_strings or action.nargs in ("?", "*"))
        ):
            return text
        return f"{text} (default: %(default)s)"


def new_parser(prog: str, doc: str | None, **kwargs) -> argparse.ArgumentParser:
    """A command parser: ``doc`` (the module docstring) in plain text as its description."""
    kwargs.setdefault("formatter_class", Formatter)
    return argparse.ArgumentParser(prog=prog, description=plain(doc or "").strip(), **kwargs)


# the modules whose text defines the train parser's flags (train and jax-train share it)
TRAIN_FLAG_SOURCES = [
    "densekit.arguments",
    "densekit.compat.flags",
    "densekit.compat.apply",
    "densekit.commands._help",
]


def cached_help(command: str, sources: list[str], render: Callable[[], str]) -> str:
    """``render()``'s help text, kept in the user's cache between calls.

    For parsers that cannot be built without a slow import (train's is the Hugging Face
    ``TrainingArguments`` dataclass, which pulls torch and peft: ~6 s). The text is keyed by
    everything it depends on: densekit's and transformers' versions, the bytes of the modules
    that define the flags (``sources``, densekit module names) and the terminal width; any
    change renders it again. An unwritable cache only costs the slow path.
    """
    digest = hashlib.blake2b(digest_size=12)
    for package in ("densekit", "transformers"):
        try:
            digest.update(f"{package}={metadata.version(package)};".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}=?;".encode())
    for name in sources:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            digest.update(Path(spec.origin).read_bytes())
    digest.update(str(shutil.get_terminal_size().columns).encode())
    path = _cache_dir() / f"{command}-{digest.hexdigest()}.txt"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        pass
    text = render()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass
    return text


def _cache_dir() -> Path:
    """``$DENSEKIT_CACHE``, else ``$XDG_CACHE_HOME/densekit``, else ``~/.cache/densekit``."""
    if os.environ.get("DENSEKIT_CACHE"):
        return Path(os.environ["DENSEKIT_CACHE"]) / "help"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "densekit" / "help"
