"""Settings files: one YAML or JSON mapping of names to values, checked against what is known.

Used by ``densekit train config.yaml`` and ``densekit recipe --config``; a missing or broken file,
a non-mapping or an unknown key is one clear line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from densekit.errors import ConfigError


def read_mapping(path: str, known: Iterable[str], what: str = "setting") -> dict[str, Any]:
    """The mapping in ``path`` (``.json``, else YAML); keys must be among ``known``."""
    import yaml

    kind = "JSON" if path.endswith(".json") else "YAML"
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
        values = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a readable {kind} file ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} names to values")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown {what}(s): {', '.join(map(str, unknown))}")
    return values


def coerce_numbers(values: dict[str, Any], types: Iterable[type]) -> dict[str, Any]:
    """YAML 1.1 reads ``1e-5`` (no dot) as a string: turn such strings into the number the
    dataclass field (of any of ``types``) expects."""
    import typing

    hints: dict = {}
    for dtype in types:
        hints.update(typing.get_type_hints(dtype))
    out = dict(values)
    for key, value in values.items():
        if not isinstance(value, str):
            continue
        kinds = typing.get_args(hints.get(key)) or (hints.get(key),)
        for kind in (int, float):
            if kind in kinds:
                try:
                    out[key] = kind(value)
                    break
                except ValueError:
                    continue
    return out
