"""Cross-encoder rerankers on a backend: torch, or the sequence-classification graph exported
once to ONNX Runtime or OpenVINO (fp32, or int8) by the machinery the bi-encoder towers use.

The export (``<model>/densekit_export/<format>-<dtype>/reranker.*`` unless ``export_dir``) holds
the one-label classifier: token ids, mask and token types (when the tokenizer makes them)
-> one logit per pair, the last layer computed for the first token only where the model allows
it (:meth:`~CrossEncoderReranker.scorer`; a different fingerprint kind). It is fingerprinted like a tower export and checked against torch on a
probe batch of pairs before it is kept: fp32 logits to a relative tolerance, int8 ones by the
correlation of the scores (the order is what a reranker is for). Tokenizing, batching by length,
the activation and :meth:`~CrossEncoderReranker.rerank_run` stay densekit's torch-side code:
the reranker returned is a :class:`CrossEncoderReranker` whose model runs in the runtime.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from densekit.errors import ConfigError
from densekit.inference.backends.common import (
    PAIR_INPUTS,
    ExportSpec,
    SequenceScores,
    Tower,
    check_exportable_folder,
    check_exportable_reranker,
    export_folder,
    sample_rows,
)
from densekit.inference.backends.exports import (
    _FP32_TOLERANCE,
    _MODULES,
    ExportJob,
    export_graphs,
    read_meta,
    require_runtime,
)
from densekit.modeling.reranker import CrossEncoderReranker

logger = logging.getLogger(__name__)

RERANK_BACKENDS = ("torch", "onnx", "openvino")
GRAPH = "reranker"  # the graph's file name in the export folder, and its fingerprint kind
FIRST_TOKEN_GRAPH = "reranker-first-token"  # the kind when the last layer runs for [CLS] only
_PROBE_QUERIES = ("what do protein kinases do", "insulin resistance", "vaccine T cell response")
_PROBE_PASSAGES = (
    "Protein kinases phosphorylate other proteins and so switch signalling pathways on or off.",
    "short text",
    "A longer passage about insulin signalling, obesity and the immune response of T cells to "
    "a vaccine, long enough to be the row that decides the padded length of the batch.",
    "Dense retrieval encodes queries and passages into vectors.",
)
# int8 scores must keep the probe's order: Pearson correlation with torch's logits (a broken
# graph gives ~0), or, when the probe's logits hardly differ, a small absolute error
_INT8_MIN_CORRELATION = 0.9
_INT8_FLAT_TOLERANCE = 0.05
Pairs = Sequence[tuple[str, str]]


def _pair_inputs(reranker: CrossEncoderReranker) -> tuple[str, ...]:
    made = set(reranker.tokenizer.model_input_names)
    return tuple(name for name in PAIR_INPUTS if name in made or name != "token_type_ids")


def _feeds(reranker: CrossEncoderReranker, pairs: Pairs, names) -> dict[str, np.ndarray]:
    batch = reranker.tokenize(list(pairs))
    return {name: batch[name].numpy().astype(np.int64) for name in names}


def _probe_pairs(reranker: CrossEncoderReranker) -> list[tuple[str, str]]:
    return [reranker.format_pair(q, "", p) for q in _PROBE_QUERIES for p in _PROBE_PASSAGES]


def _check_scores(name: str, got: np.ndarray, expected: np.ndarray, sample, spec) -> None:
    """Refuse an export whose logits differ from torch's on the probe pairs."""
    if got.shape != expected.shape:
        raise ConfigError(f"the {spec.name} export of the {name} gives logits of shape {got.shape}")
    error = float(np.abs(got - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    if spec.quantize is None:
        if error > _FP32_TOLERANCE * scale:
            raise ConfigError(
                f"the {spec.name} export of the {name} does not reproduce torch "
                f"(max difference {error:.2g}): use --backend torch for this model"
            )
        return
    if error <= _INT8_FLAT_TOLERANCE * max(float(np.std(expected)), 1e-3):
        return
    correlation = float(np.corrcoef(got.astype(np.float64), expected.astype(np.float64))[0, 1])
    if not correlation >= _INT8_MIN_CORRELATION:  # NaN fails too
        raise ConfigError(
            f"the {spec.name} export of the {name} is too far from torch (score correlation "
            f"{correlation:.3f}): use the fp32 export for this model"
        )


class RuntimeClassifier(nn.Module):
    """Stands in for the HF classifier inside :class:`CrossEncoderReranker`: the runtime's
    logits for a tokenized batch (``.logits``, shape ``[batch, 1]``), on the CPU."""

    def __init__(self, config, run: Tower, input_names: Sequence[str]) -> None:
        super().__init__()
        self.config = config
        self.run, self.input_names = run, tuple(input_names)
        # CrossEncoderReranker.logits reads the device off the parameters
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, **inputs: torch.Tensor) -> SimpleNamespace:
        feeds = {n: inputs[n].cpu().numpy().astype(np.int64, copy=False) for n in self.input_names}
        logits = np.asarray(self.run(feeds), dtype=np.float32).reshape(-1, 1)
        return SimpleNamespace(logits=torch.from_numpy(logits))


def ensure_reranker_export(
    reranker: CrossEncoderReranker,
    model_path: str | os.PathLike,
    spec: ExportSpec,
    export_dir: str | None = None,
    calibration_pairs: Pairs | Callable[[CrossEncoderReranker], Pairs] | None = None,
    redo: bool = False,
) -> tuple[Path, str]:
    """The folder of ``spec``'s export of ``reranker`` (loaded from ``model_path``) and whether
    it was ``"reused"``, ``"exported"`` or ``"re-exported"``. OpenVINO int8 calibrates on
    ``calibration_pairs`` (formatted ``(query, passage)`` pairs, e.g. a sample of a run's, or a
    function of the reranker giving them, called only then)."""
    require_runtime(spec)  # a missing package fails before anything is written
    folder = export_folder(model_path, spec, export_dir)
    check_exportable_reranker(reranker.model, model_path)
    names = _pair_inputs(reranker)

    def calibration():
        pairs = calibration_pairs(reranker) if callable(calibration_pairs) else calibration_pairs
        if not pairs:
            raise ConfigError("OpenVINO int8 calibrates on (query, passage) pairs: none were given")
        return [_feeds(reranker, [pair], names) for pair in pairs]

    job = ExportJob(
        graphs={GRAPH: SequenceScores(reranker.model, reranker.scorer(), names)},
        probe=lambda: _feeds(reranker, _probe_pairs(reranker), names),
        check=_check_scores,
        calibration=calibration,
        kind=FIRST_TOKEN_GRAPH if reranker.first_token_only else GRAPH,
    )
    return export_graphs(job, model_path, spec, folder, redo)


def sample_pairs(pairs: Pairs, size: int = 300) -> list[tuple[str, str]]:
    """A fixed random sample of pairs (OpenVINO int8 calibration)."""
    return [pairs[i] for i in sample_rows(len(pairs), size)]


def load_reranker(
    path: str | os.PathLike,
    backend: str = "torch",
    quantize: str | None = None,
    export_dir: str | None = None,
    threads: int | None = None,
    calibration_pairs: Pairs | Callable[[CrossEncoderReranker], Pairs] | None = None,
    first_token: bool = True,
    **overrides,
) -> CrossEncoderReranker:
    """The cross-encoder folder ``path`` scoring on ``backend``; ``reranker.backend`` says which
    (``torch``, ``onnx-fp32``, ``openvino-int8``, ...). ``overrides`` as for
    :meth:`CrossEncoderReranker.from_pretrained` (e.g. ``max_len``). ``first_token=False``
    scores (and exports) the whole model instead of :meth:`~CrossEncoderReranker.scorer`'s
    first-token path: the same logits, slower (a baseline for benchmarks)."""
    if backend not in RERANK_BACKENDS:
        raise ConfigError(
            f"reranker backend {backend!r}: expected one of {', '.join(RERANK_BACKENDS)}"
        )
    if backend == "torch":
        if quantize:
            raise ConfigError("--quantize int8 needs --backend onnx or openvino")
        reranker = CrossEncoderReranker.from_pretrained(path, **overrides)
        reranker.backend, reranker.first_token = "torch", first_token
        return reranker
    spec = ExportSpec(backend, quantize)
    require_runtime(spec)
    if Path(path).is_dir():
        check_exportable_folder(path, verb="reranks")  # before any weights are loaded
    reranker = CrossEncoderReranker.from_pretrained(path, **overrides)
    reranker.first_token = first_token
    names = _pair_inputs(reranker)
    folder, status = ensure_reranker_export(reranker, path, spec, export_dir, calibration_pairs)
    logger.info("reranker %s export %s: %s", spec.name, status, folder)
    try:
        run = _MODULES[backend].load(folder, [GRAPH], threads)[GRAPH]
    except Exception as exc:  # a damaged cached export
        if status != "reused":
            raise
        logger.warning("%s does not load (%s): exporting it again", folder, exc)
        ensure_reranker_export(reranker, path, spec, export_dir, calibration_pairs, redo=True)
        run = _MODULES[backend].load(folder, [GRAPH], threads)[GRAPH]
    if read_meta(folder).get("graph") not in (GRAPH, FIRST_TOKEN_GRAPH):
        raise ConfigError(f"{folder} is not a reranker export: export it again (delete it)")
    model = RuntimeClassifier(reranker.model.config, run, names)
    exported = CrossEncoderReranker(model, reranker.tokenizer, reranker.settings)
    exported.backend = spec.name
    return exported
