"""Inference backends for ``encode``: the torch encoder, or its transformer exported once to
ONNX Runtime or OpenVINO (fp32, or int8) and run with densekit's own pooling and batching."""

from densekit.inference.backends.common import (
    EXPORT_ROOT,
    FORMATS,
    QUANTIZATIONS,
    ExportedEncoder,
    ExportSpec,
    check_exportable_folder,
    sample_rows,
)
from densekit.inference.backends.exports import (
    BACKENDS,
    ensure_export,
    load_backend,
    require_runtime,
)

__all__ = [
    "BACKENDS",
    "EXPORT_ROOT",
    "FORMATS",
    "QUANTIZATIONS",
    "ExportSpec",
    "ExportedEncoder",
    "check_exportable_folder",
    "ensure_export",
    "load_backend",
    "require_runtime",
    "sample_rows",
]
