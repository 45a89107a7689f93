"""OpenVINO backend: ``openvino.convert_model`` straight from the torch module, int8 through
``nncf.quantize`` (weights and activations, calibrated on a sample of the corpus), run on CPU.

Converted from torch, the graph keeps one ``ScaledDotProductAttention`` op per layer, which
OpenVINO's CPU plugin runs as a fused kernel. Weights are saved in fp32
(``compress_to_fp16=False``) and compiled with ``INFERENCE_PRECISION_HINT=f32``: on CPUs with
bf16 units OpenVINO would otherwise compute in bf16 and the vectors would drift from torch's.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from densekit.errors import ConfigError
from densekit.inference.backends.common import Tower, require


def _convert(graph: nn.Module, sample: dict[str, torch.Tensor]):
    """``graph`` (``TokenStates`` or ``SequenceScores``) as an OpenVINO model."""
    ov = require("openvino", "openvino")
    example = {name: sample[name] for name in graph.input_names}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return ov.convert_model(graph.eval(), example_input=example)
    except Exception as exc:  # the converter raises many kinds; all mean "cannot convert this"
        model_type = getattr(graph.backbone.config, "model_type", "?")
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot convert this {model_type} model to OpenVINO: {first}") from None


def _quantize(model, calibration: list[dict[str, np.ndarray]]):
    """int8 weights and activations (NNCF post-training quantisation, transformer scheme).

    ``ModelType.TRANSFORMER`` keeps the ops that lose accuracy in int8 (softmax, layer norm,
    GELU inputs) in fp32; ranges come from the calibration passages.
    """
    nncf = require("nncf", "openvino")
    return nncf.quantize(
        model,
        nncf.Dataset(calibration),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
    )


def scheme(quantize: str | None) -> str | None:
    """Nothing of an OpenVINO export depends on the machine it is made on: the runtime picks
    its kernels for the CPU at load time."""
    return None


def export(
    graphs: dict[str, nn.Module],
    sample: dict[str, torch.Tensor],
    folder: Path,
    quantize: str | None,
    calibration: list[dict[str, np.ndarray]] | None,
) -> dict:
    """Write ``<name>.xml`` + ``.bin`` for each graph into ``folder``; facts for the manifest."""
    ov = require("openvino", "openvino")
    if quantize == "int8" and not calibration:
        raise ConfigError(
            "OpenVINO int8 calibrates on a sample of the corpus: give the texts "
            "(densekit export --dataset_path CORPUS, or encode the corpus first)"
        )
    for name, graph in graphs.items():
        model = _convert(graph, sample)
        if quantize == "int8":
            model = _quantize(model, calibration)
        ov.save_model(model, str(folder / f"{name}.xml"), compress_to_fp16=False)
    scheme = "nncf.quantize, transformer preset, weights+activations" if quantize else None
    return {"int8_scheme": scheme, "calibration_texts": len(calibration or [])}


def load(folder: Path, names: list[str], threads: int | None) -> dict[str, Tower]:
    """One compiled CPU model per tower, tuned for the latency of one batch at a time.

    ``encode`` sends one batch at a time, so the LATENCY hint (one stream using every core)
    is the right one; THROUGHPUT would split the cores into streams that sit idle.
    """
    ov = require("openvino", "openvino")
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return {
        name: _runner(core.compile_model(str(folder / f"{name}.xml"), "CPU", config))
        for name in names
    }


def _runner(compiled) -> Tower:
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return request.infer(feeds)[output]

    return run
