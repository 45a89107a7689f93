"""``densekit export``: a model's transformer exported once for ONNX Runtime or OpenVINO.

The export is cached beside the model (``<model>/densekit_export/<format>-<fp32|int8>``, or under
``--export_dir``) with a fingerprint of the weights; ``densekit encode --backend`` reuses it, and
either command exports again when the model has changed since. OpenVINO int8 calibrates on a
sample of ``--dataset_path`` (the corpus you will encode).
"""

from __future__ import annotations

import argparse
import sys

from densekit.commands import run_guarded
from densekit.commands._help import new_parser
from densekit.errors import ConfigError
from densekit.resources import bundled_model_path

# densekit.inference.backends' FORMATS and QUANTIZATIONS, here so that --help loads no torch
FORMATS = ("onnx", "openvino")
QUANTIZATIONS = ("int8",)


def build_parser() -> argparse.ArgumentParser:
    p = new_parser("densekit export", __doc__)
    p.add_argument(
        "--model_name_or_path",
        default=None,
        help="densekit, ST or HF folder (default: the bundled all-MiniLM-L6-v2)",
    )
    p.add_argument("--format", required=True, choices=FORMATS, help="the runtime to export for")
    p.add_argument("--quantize", choices=QUANTIZATIONS, default=None, help="int8 weights")
    p.add_argument(
        "--export_dir", default=None, help="where exports go (default: beside the model)"
    )
    p.add_argument("--dataset_path", help="corpus to calibrate OpenVINO int8 on")
    p.add_argument("--calibration_size", type=int, default=300, help="passages sampled")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from densekit.data.readers import load_corpus
    from densekit.inference.backends import (
        ExportSpec,
        check_exportable_folder,
        ensure_export,
        require_runtime,
    )
    from densekit.inference.backends.exports import corpus_sample
    from densekit.modeling.encoder import DenseEncoder, load_tokenizer

    spec = ExportSpec(args.format, args.quantize)
    require_runtime(spec)
    if args.calibration_size < 1:
        raise ConfigError(f"--calibration_size must be positive, got {args.calibration_size}")
    calibrate = spec.format == "openvino" and spec.quantize is not None
    if calibrate and not args.dataset_path:
        raise ConfigError(
            "--format openvino --quantize int8 calibrates on your corpus: pass --dataset_path"
        )
    table = load_corpus(args.dataset_path) if calibrate else None  # bad data fails first
    model = args.model_name_or_path or bundled_model_path()
    check_exportable_folder(model)
    encoder = DenseEncoder.from_pretrained(model)
    tokenizer = load_tokenizer(model, encoder.settings.padding_side)
    texts = corpus_sample(encoder, table, False, args.calibration_size) if calibrate else None
    folder, status = ensure_export(encoder, tokenizer, model, spec, args.export_dir, texts)
    print(f"densekit export: {spec.name} {status}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
