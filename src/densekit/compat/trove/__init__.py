"""Trove's import paths over densekit: ``from trove import X`` -> ``from densekit.compat.trove
import X`` (or ``from densekit import X``), ``trove.modeling.encoder_default`` ->
``densekit.compat.trove.modeling.encoder_default``. Names resolve lazily, as in ``densekit``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Trove's top-level names that densekit has (all of them are densekit's own exports too).
NAMES = (
    "BiEncoderRetriever",
    "BinaryDataset",
    "DataArguments",
    "EvaluationArguments",
    "IRMetrics",
    "MaterializedQRelConfig",
    "ModelArguments",
    "MultiLevelDataset",
    "RetrievalCollator",
    "RetrievalEvaluator",
    "RetrievalLoss",
    "RetrievalTrainer",
    "RetrievalTrainingArguments",
)

__all__ = [*NAMES, "modeling"]


def __getattr__(name: str) -> Any:
    if name == "modeling":
        return importlib.import_module(f"{__name__}.modeling")
    if name not in NAMES:
        raise AttributeError(f"densekit has no counterpart of trove.{name}")
    return getattr(importlib.import_module("densekit"), name)
