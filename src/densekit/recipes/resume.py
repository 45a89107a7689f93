"""The recipe's output folder: checked like every output, built in a hidden work folder, resumable.

Everything is written under ``<output_dir>/.recipe-work/`` and moved into ``output_dir`` only
when the whole recipe has finished, so a failed or killed run leaves no output that looks
finished. Each finished stage is recorded there (``stages/<name>.json``) under a key of its
inputs (data files, the settings the stage reads, the keys of the stages it reads from): a rerun
after a failure or a kill reuses every stage whose key is unchanged and redoes the others.

``output_dir`` may be absent, empty, or a recipe folder densekit wrote; a finished recipe is
replaced only with ``--overwrite``, and then only the recipe's own entries: anything the user
added stays.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from densekit.atomic import WRITER, atomic_open, check_writable
from densekit.errors import ConfigError

logger = logging.getLogger("densekit.recipe")

WORK = ".recipe-work"
STATE = "state.json"
# what the recipe leaves in output_dir: only these are ever replaced there
OUTPUTS = (
    "recipe_config.json", "train.mined.jsonl", "runs", "model", "reranker", "distilled",
    "searcher", "results.json", "results.md",
)  # fmt: skip


def key(*parts: Any) -> str:
    """A short stable digest of ``parts`` (JSON)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def files_stamp(path: str | os.PathLike) -> list:
    """Name, size and modification time of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        return [[path.name, stat.st_size, stat.st_mtime_ns]]
    if not path.is_dir():
        return [str(path)]  # a hub name
    return [
        [str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(path.rglob("*"))
        if p.is_file() and WORK not in p.parts
    ]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class RecipeFolder:
    """``output_dir`` and its work folder; the record of finished stages."""

    def __init__(self, out: str | os.PathLike, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.work = self.out / WORK
        self.overwrite = overwrite
        state = _read_json(self.work / STATE)
        self.ours = isinstance(state, dict) and state.get("writer") == WRITER
        self.finished = self.ours and bool(state.get("finished"))

    def check(self) -> None:
        """Refuse, before any work, an ``output_dir`` the recipe must not write into."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--output_dir {out} is a file; expected a folder path")
        check_writable(out)
        if not out.is_dir() or not any(out.iterdir()) or (self.ours and not self.finished):
            return
        if not self.ours:
            raise ConfigError(
                f"--output_dir {out} is a non-empty folder densekit did not write; "
                "choose another path"
            )
        if not self.overwrite:
            raise ConfigError(
                f"--output_dir {out} holds a finished recipe; pass --overwrite to run it again"
            )

    def start(self) -> None:
        """Create the work folder; a finished recipe being overwritten starts from scratch."""
        if self.finished and self.work.is_dir():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self._write_state(finished=False)

    def _write_state(self, finished: bool) -> None:
        with atomic_open(self.work / STATE, "w", encoding="utf-8") as handle:
            json.dump({"writer": WRITER, "finished": finished}, handle)

    def done(self, stage: str, stage_key: str) -> dict[str, Any] | None:
        """What ``stage`` recorded under ``stage_key``, or None when it must run."""
        record = _read_json(self.work / "stages" / f"{stage}.json")
        if isinstance(record, dict) and record.get("key") == stage_key:
            logger.info("== %s: reused from an earlier run of this recipe", stage)
            return record["value"]
        return None

    def record(self, stage: str, stage_key: str, value: dict[str, Any]) -> None:
        (self.work / "stages").mkdir(exist_ok=True)
        with atomic_open(self.work / "stages" / f"{stage}.json", "w", encoding="utf-8") as handle:
            json.dump({"key": stage_key, "value": value}, handle)

    def finish(self) -> None:
        """Move every output from the work folder into ``output_dir``; an output of an earlier
        recipe that this one did not make (a reranker, when reranking is now off) is removed."""
        for name in OUTPUTS:
            made = self.work / name
            target = self.out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            if made.exists():
                os.replace(made, target)
        shutil.rmtree(self.work / "stages", ignore_errors=True)
        self._write_state(finished=True)


def plain_run(run: dict) -> dict[str, dict[str, float]]:
    """A run with plain floats, for JSON."""
    return {q: {d: float(s) for d, s in hits.items()} for q, hits in run.items()}
