"""Checkpoint folders of a training run: which exist, which are complete, which to resume.

A run killed while writing a checkpoint leaves ``checkpoint-N`` without weights or state;
resume and checkpoint evaluation skip such folders and name them instead of failing inside
the Trainer.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from densekit.errors import ConfigError
from densekit.modeling.config import CONFIG_NAME

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def checkpoint_folders(run_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` folders of ``run_dir`` ordered by step."""
    folder = Path(run_dir)
    found = [p for p in folder.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def has_model(folder: str | Path) -> bool:
    """A loadable densekit model: its config (written last) and the weights of every tower."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        return False
    towers = [folder / "query_model", folder / "passage_model"]
    if all(t.is_dir() for t in towers):
        return all(any((t / w).is_file() for w in _WEIGHTS) for t in towers)
    return any((folder / w).is_file() for w in _WEIGHTS)


def is_resumable(folder: str | Path) -> bool:
    """A checkpoint the Trainer can resume: a complete model and the trainer state."""
    return has_model(folder) and (Path(folder) / TRAINER_STATE).is_file()


def resume_point(spec: str | bool | None, output_dir: str) -> str | None:
    """The checkpoint to resume from for ``--resume_from_checkpoint`` (``True``, a run folder
    or a checkpoint); incomplete checkpoints are skipped with one warning naming them."""
    if spec in (None, False, "", "False", "false"):
        return None
    run_dir = output_dir if spec in (True, "True", "true") else str(spec)
    if is_resumable(run_dir):
        return run_dir
    folders = checkpoint_folders(run_dir)
    if not folders:
        raise ConfigError(f"--resume_from_checkpoint: {run_dir} holds no checkpoint to resume")
    complete = [f for f in folders if is_resumable(f)]
    skipped = [f.name for f in folders if f not in complete]
    if skipped:
        logger.warning("skipping incomplete checkpoint(s) in %s: %s", run_dir, ", ".join(skipped))
    if not complete:
        raise ConfigError(
            f"--resume_from_checkpoint: every checkpoint in {run_dir} is incomplete "
            f"({', '.join(skipped)})"
        )
    return str(complete[-1])


def save_final(trainer: Any, output_dir: str, marker: str = CONFIG_NAME) -> None:
    """Save the trained model into ``output_dir`` atomically: into a temp folder first, then
    each entry renamed into place, ``marker`` (the model's own config) last, so its presence
    marks a complete folder. On ranks that do not save, ``save_model`` still joins collective
    gathers (ZeRO-3) and writes nothing."""
    if not trainer.args.should_save:
        trainer.save_model(output_dir)
        return
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".final-", dir=output_dir)
    try:
        trainer.save_model(tmp)
        for name in sorted(os.listdir(tmp), key=lambda entry: entry == marker):
            target = Path(output_dir) / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(Path(tmp) / name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
