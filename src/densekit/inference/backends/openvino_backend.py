"""OpenVINO backend: ``openvino.convert_model`` straight from the torch module, int8 through
``nncf.quantize`` (weights and activations, calibrated on a sample of the corpus), run on CPU.

Converted from torch, the graph keeps one ``ScaledDotProductAttention`` op per layer, which
OpenVINO's CPU plugin runs as a fused kernel. Weights are saved in fp32
(``compress_to_fp16=False``). An fp32 export is compiled with ``INFERENCE_PRECISION_HINT=f32``:
on CPUs with bf16 units OpenVINO would otherwise compute in bf16 and the vectors would drift
from torch's. An int8 export's float ops run in bf16 where precision ``auto`` picks bf16 (a CPU
with AMX or AVX512_BF16): its vectors are int8-approximate already, and bf16 was faster at the
same quality (:func:`float_precision`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from densekit import precision
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
    towers = {}
    for name in names:
        model = core.read_model(str(folder / f"{name}.xml"))
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": float_precision(model)}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        towers[name] = _runner(core.compile_model(model, "CPU", config))
    return towers


def float_precision(model) -> str:
    """``INFERENCE_PRECISION_HINT`` for ``model``: bf16 for the float ops of an int8 (NNCF) graph
    where precision ``auto`` resolves to bf16, else f32. On the AMX Xeon, int8 MiniLM encoded
    1.17x the passages per second with bf16 float ops, at the same dev nDCG@10 (+0.0053 vs
    +0.0056 over torch fp32; docs/benchmarks.md §25). ``DENSEKIT_PRECISION=fp32`` keeps f32."""
    quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    return "bf16" if quantized and precision.resolve("auto") == "bf16" else "f32"


def _runner(compiled) -> Tower:
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return request.infer(feeds)[output]

    return run
