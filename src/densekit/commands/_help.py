"""What every command's ``--help`` shares: a plain-text description and each flag's default.

Not a command. Kept free of heavy imports: building a parser must not load torch,
transformers, datasets or faiss (tests/commands/test_startup.py holds that rule).
"""

from __future__ import annotations

import argparse
import re

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
