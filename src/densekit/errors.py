"""Errors that the command line turns into one readable line and exit code 2."""

from __future__ import annotations


class DensekitError(Exception):
    """A problem the user can fix: bad input, a bad flag, missing hardware."""

    exit_code = 2


class DataError(DensekitError):
    """Bad input data, located by file and (when known) line or record number."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ConfigError(DensekitError):
    """A flag or combination of flags that cannot work (on this machine)."""
