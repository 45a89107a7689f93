"""densekit: train, encode, index, search, evaluate and mine hard negatives for dense retrievers.

The Python API composes the same pieces the command line uses (Trove-style)::

    from densekit import (DataArguments, ModelArguments, RetrievalTrainingArguments,
                          MaterializedQRelConfig, BinaryDataset, RetrievalCollator,
                          DenseEncoder, RetrievalTrainer, RetrievalLoss)

Imports are lazy so that ``densekit --help`` does not pay for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ModelArguments": "densekit.arguments",
    "DataArguments": "densekit.arguments",
    "RetrievalTrainingArguments": "densekit.arguments",
    "parse_train_args": "densekit.arguments",
    "load_corpus": "densekit.data.readers",
    "load_queries": "densekit.data.readers",
    "load_train": "densekit.data.readers",
    "load_qrels": "densekit.data.qrels",
    "Corpus": "densekit.data.train_dataset",
    "TrainDataset": "densekit.data.train_dataset",
    "MaterializedQRelConfig": "densekit.data.qrel_config",
    "BinaryDataset": "densekit.data.qrel_config",
    "MultiLevelDataset": "densekit.data.qrel_config",
    "RetrievalCollator": "densekit.data.collator",
    "DenseEncoder": "densekit.modeling.encoder",
    "BiEncoderRetriever": "densekit.modeling.factory",
    "RetrievalLoss": "densekit.modeling.losses",
    "RetrievalTrainer": "densekit.training.trainer",
    "encode_texts": "densekit.inference.encode",
    "dense_run": "densekit.retrieval.dense",
    "train": "densekit.training.run",
    "read_run": "densekit.data.runs",
    "write_run": "densekit.data.runs",
    "TextFormat": "densekit.data.formatting",
    "MatryoshkaLoss": "densekit.modeling.losses",
    "fuse": "densekit.retrieval.fusion",
    "tune_weights": "densekit.evaluation.fusion_tuning",
    "compare_runs": "densekit.evaluation.significance",
    "ExactEvaluator": "densekit.evaluation.exact",
    "evaluate": "densekit.evaluation.metrics",
    "IRMetrics": "densekit.evaluation.ir_metrics",
    "EvaluationArguments": "densekit.evaluation.retrieval_evaluator",
    "RetrievalEvaluator": "densekit.evaluation.retrieval_evaluator",
    "mine_negatives": "densekit.retrieval.mine",
    "bm25_run": "densekit.retrieval.bm25",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'densekit' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
