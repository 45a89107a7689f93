"""Checkpoints of a JAX run: a model folder that every densekit command reads, plus the train
state that resumes it.

``checkpoint-N`` is the torch encoder's folder layout (Hugging Face tower(s), densekit config,
sentence-transformers files, tokenizer), so ``densekit encode``, ``evaluate-checkpoints`` and
``SentenceTransformer`` load it, and ``jax_state/`` inside it holds the parameters and optax
state saved by orbax. Folders are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from densekit.errors import ConfigError
from densekit.training.checkpoints import checkpoint_folders, has_model

logger = logging.getLogger(__name__)

STATE_DIR = "jax_state"
PROGRESS_FILE = "jax_progress.json"


def is_resumable(folder: Path) -> bool:
    return (
        has_model(folder) and (folder / STATE_DIR).is_dir() and (folder / PROGRESS_FILE).is_file()
    )


def save_checkpoint(
    folder: Path, state: Any, write_model: Any, progress: dict[str, Any], keep: int | None
) -> None:
    """Write ``folder`` (every process calls this; process 0 writes the model files).

    ``write_model(path)`` writes the model folder; ``keep`` older checkpoints survive
    (``--save_total_limit``).
    """
    tmp = folder.parent / f".tmp-{folder.name}"
    lead = jax.process_index() == 0
    if lead:
        shutil.rmtree(tmp, ignore_errors=True)
        write_model(tmp)
        (tmp / PROGRESS_FILE).write_text(json.dumps(progress, indent=2) + "\n", "utf-8")
    _barrier(f"densekit model {folder.name}")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save((tmp / STATE_DIR).absolute(), state)
    checkpointer.wait_until_finished()
    _barrier(f"densekit state {folder.name}")
    if lead:
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        _rotate(folder.parent, keep)
    _barrier(f"densekit saved {folder.name}")


def _barrier(name: str) -> None:
    """Wait for every process (multi-host runs only)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _rotate(run_dir: Path, keep: int | None) -> None:
    if not keep:
        return
    for old in checkpoint_folders(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def restore_state(folder: Path, like: Any) -> tuple[Any, dict[str, Any]]:
    """The train state saved in ``folder`` (placed as ``like``) and its progress record."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    state = ocp.StandardCheckpointer().restore((folder / STATE_DIR).absolute(), abstract)
    progress = json.loads((folder / PROGRESS_FILE).read_text(encoding="utf-8"))
    return state, progress


def resume_point(spec: str | bool | None, output_dir: str) -> Path | None:
    """The checkpoint ``--resume_from_checkpoint`` names (``True``: the newest complete one in
    ``--output_dir``; a run folder: its newest; a checkpoint folder: itself)."""
    if spec in (None, False, "", "False", "false"):
        return None
    run_dir = Path(output_dir if spec in (True, "True", "true") else str(spec))
    if is_resumable(run_dir):
        return run_dir
    complete = [f for f in checkpoint_folders(run_dir) if is_resumable(f)]
    if not complete:
        raise ConfigError(f"--resume_from_checkpoint: {run_dir} holds no JAX checkpoint to resume")
    return complete[-1]


def publish(tmp: Path, output_dir: Path) -> None:
    """Move a finished model folder's entries into ``output_dir``, densekit's config last (its
    presence marks a complete folder)."""
    entries = sorted(os.listdir(tmp), key=lambda name: name == "densekit_config.json")
    for name in entries:
        target = output_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp / name, target)
    shutil.rmtree(tmp, ignore_errors=True)
