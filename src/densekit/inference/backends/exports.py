"""Export a model once per format, reuse it while the model is unchanged, and load it to encode.

An export is a folder (``<model>/densekit_export/onnx-fp32`` etc.) written atomically, with a
``meta.json`` holding the fingerprint of the model's weights and configs. A later call with the
same fingerprint reuses it; a different fingerprint (the model was retrained or replaced in
place) exports again. A file lock makes the ranks of a ``torchrun`` encode export once and wait.
Every new export is checked against the torch encoder on a probe batch before it is kept.
:func:`export_graphs` is that machinery for any set of graphs (:class:`ExportJob`): the encoder
towers here (:func:`ensure_export`), a cross-encoder's scores in :mod:`.rerank`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from densekit import __version__
from densekit.atomic import WRITER, atomic_path, check_target
from densekit.errors import ConfigError
from densekit.inference.backends import openvino_backend, ort_backend
from densekit.inference.backends.common import (
    ExportedEncoder,
    ExportSpec,
    PooledStates,
    backbones,
    calibration_feeds,
    check_exportable,
    export_folder,
    fingerprint,
    read_meta,
    require,
    sample_rows,
    token_feeds,
)
from densekit.inference.encode import format_window

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "openvino")
_MODULES = {"onnx": ort_backend, "openvino": openvino_backend}
_RUNTIMES = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino",)}
_PROBE = (
    "Dense retrieval encodes queries and passages into vectors.",
    "short text",
    "A longer passage about protein kinases, insulin signalling and the immune response "
    "of T cells to a vaccine, long enough to be the row that decides the padded length.",
)
# An fp32 export must give torch's pooled states to this relative tolerance; an int8 one must
# keep them pointing the same way (a broken graph gives cosines near 0).
_FP32_TOLERANCE = 1e-3
_INT8_MIN_COSINE = 0.9


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Exclusive lock on the export (a lock file beside it), so processes export it once."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        handle = open(folder.parent / f".{folder.name}.lock", "a+")  # noqa: SIM115 (held below)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the export to {folder.parent} ({exc.strerror}): "
            "pass --export_dir to put it elsewhere"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def require_runtime(spec: ExportSpec) -> None:
    """Fail with the extra to install when ``spec``'s runtime packages are missing."""
    for module in _RUNTIMES[spec.format] + (("nncf",) if spec.name == "openvino-int8" else ()):
        require(module, spec.format)


# (graph name, runtime's output, torch's output, probe feeds, spec): raises when too far apart
Check = Callable[[str, np.ndarray, np.ndarray, dict[str, np.ndarray], ExportSpec], None]


@dataclass
class ExportJob:
    """What to export from one model folder: graphs by file name (``PooledStates`` of each tower,
    ``SequenceScores`` of a reranker), the probe batch they are checked on against torch, the
    check, the OpenVINO int8 calibration feeds (made only when needed) and ``kind``, which
    keeps the fingerprints of different graphs of one folder apart."""

    graphs: dict[str, nn.Module]
    probe: Callable[[], dict[str, np.ndarray]]
    check: Check
    calibration: Callable[[], list[dict[str, np.ndarray]] | None] = lambda: None
    kind: str | None = None


def ensure_export(
    encoder: Any,
    tokenizer,
    model_path: str | Path,
    spec: ExportSpec,
    export_dir: str | None = None,
    calibration_texts: Sequence[str] | None = None,
    redo: bool = False,
) -> tuple[Path, str]:
    """The folder of ``spec``'s export of ``encoder`` (loaded from ``model_path``), and whether it
    was ``"reused"``, ``"exported"`` or ``"re-exported"`` (the model changed since, or ``redo``:
    the cached export failed to load)."""
    require_runtime(spec)  # a missing package fails before anything is written
    folder = export_folder(model_path, spec, export_dir)
    check_exportable(encoder, model_path)
    pooling = encoder.settings.pooling  # a flag may override the folder's: part of the stamp
    graphs = {name: PooledStates(model, pooling) for name, model in backbones(encoder).items()}
    first_token = any(graph.first_token is not None for graph in graphs.values())
    job = ExportJob(
        graphs=graphs,
        probe=lambda: _probe(tokenizer, encoder),
        check=_check_states,
        calibration=lambda: (
            calibration_feeds(tokenizer, calibration_texts, encoder.settings)
            if calibration_texts
            else None
        ),
        kind=f"encoder-{pooling}-pooling" + ("-first-token" if first_token else ""),
    )
    return export_graphs(job, model_path, spec, folder, redo)


def export_graphs(
    job: ExportJob, model_path: str | Path, spec: ExportSpec, folder: Path, redo: bool = False
) -> tuple[Path, str]:
    """``job``'s export in ``folder``: reused when its fingerprint matches (and not ``redo``),
    else written atomically under a lock and checked against torch; with its status."""
    check_target(folder, folder=True, overwrite=True)  # a refusal leaves no lock file behind
    stamp = fingerprint(model_path, spec, job.kind, _MODULES[spec.format].scheme(spec.quantize))
    with _locked(folder):
        meta = read_meta(folder)
        if meta is not None and meta.get("fingerprint") == stamp and not redo:
            return folder, "reused"
        status = "exported" if meta is None else "re-exported"
        if meta is not None:
            logger.warning("%s was exported from another version of the model: redoing", folder)
        with atomic_path(folder, folder=True, overwrite=True) as tmp:
            tmp.mkdir(parents=True)
            facts = _write(job, tmp, spec)
            meta = {
                "writer": WRITER,
                "kind": "export",
                "format": spec.format,
                "quantize": spec.quantize,
                "fingerprint": stamp,
                "model": str(Path(model_path).resolve()),
                "towers": sorted(job.graphs),
                **({"graph": job.kind} if job.kind else {}),
                "densekit": __version__,
                **facts,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder, status


def _write(job: ExportJob, folder: Path, spec: ExportSpec) -> dict:
    """Export every graph into ``folder`` and check it against torch on the probe batch."""
    graphs = job.graphs
    for graph in graphs.values():
        graph.eval()
    sample = {k: torch.from_numpy(v) for k, v in job.probe().items()}
    calibration = None
    if spec.quantize and spec.format == "openvino":
        calibration = job.calibration()
    facts = _MODULES[spec.format].export(graphs, sample, folder, spec.quantize, calibration)
    runtimes = _MODULES[spec.format].load(folder, list(graphs), threads=None)
    for name, graph in graphs.items():
        feeds = {k: sample[k] for k in graph.input_names}
        with torch.no_grad():
            expected = graph(**feeds).float().numpy()
        got = runtimes[name]({k: v.numpy() for k, v in feeds.items()})
        job.check(name, np.asarray(got, dtype=np.float32), expected, sample, spec)
    return facts


def _probe(tokenizer, encoder) -> dict[str, np.ndarray]:
    return token_feeds(tokenizer, _PROBE, encoder.settings, is_query=False)


def _check_states(name: str, got: np.ndarray, expected: np.ndarray, sample, spec) -> None:
    """Refuse an export whose pooled states differ from the torch model's on the probe batch."""
    if got.shape != expected.shape:
        raise ConfigError(f"the {spec.name} export of {name} gives states of shape {got.shape}")
    if spec.quantize is None:
        error = float(np.abs(got - expected).max())
        scale = max(1.0, float(np.abs(expected).max()))
        if error > _FP32_TOLERANCE * scale:
            raise ConfigError(
                f"the {spec.name} export of {name} does not reproduce torch "
                f"(max difference {error:.2g}): use --backend torch for this model"
            )
        return
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    cosine = (got * expected).sum(1) / np.maximum(norms, 1e-12)
    if float(cosine.min()) < _INT8_MIN_COSINE:
        raise ConfigError(
            f"the {spec.name} export of {name} is too far from torch (cosine "
            f"{float(cosine.min()):.3f}): use the fp32 export for this model"
        )


def corpus_sample(encoder: Any, table, is_query: bool, size: int = 300) -> list[str]:
    """A fixed random sample of ``table``'s texts as ``encoder`` formats them (calibration)."""
    rows = table.select(sample_rows(len(table), size)).to_dict()
    return format_window(encoder, rows, is_query)


def load_backend(
    encoder: Any,
    tokenizer,
    model_path: str | Path,
    backend: str = "torch",
    quantize: str | None = None,
    export_dir: str | None = None,
    calibration_texts: Sequence[str] | None = None,
    threads: int | None = None,
) -> Any:
    """An encoder for ``encode_texts`` / ``encode_table`` on ``backend``.

    ``torch`` returns ``encoder`` itself. ``onnx`` / ``openvino`` export ``encoder``'s towers on
    first use (int8 OpenVINO calibrates on ``calibration_texts``) and return an
    :class:`ExportedEncoder` carrying ``encoder``'s settings and projection: drop ``encoder``
    afterwards to free its weights.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "torch":
        if quantize:
            raise ConfigError("--quantize int8 needs --backend onnx or openvino")
        return encoder
    spec = ExportSpec(backend, quantize)
    folder, status = ensure_export(
        encoder, tokenizer, model_path, spec, export_dir, calibration_texts
    )
    logger.info("%s export %s: %s", spec.name, status, folder)
    try:
        towers = _MODULES[backend].load(folder, read_meta(folder)["towers"], threads)
    except Exception as exc:  # a damaged cached export (e.g. onnxruntime's InvalidProtobuf)
        if status != "reused":
            raise
        logger.warning("%s does not load (%s): exporting it again", folder, exc)
        ensure_export(
            encoder, tokenizer, model_path, spec, export_dir, calibration_texts, redo=True
        )
        towers = _MODULES[backend].load(folder, read_meta(folder)["towers"], threads)
    pooler = encoder.pooler.cpu().eval() if encoder.pooler is not None else None
    return ExportedEncoder(encoder.settings, pooler, towers, spec.name)
