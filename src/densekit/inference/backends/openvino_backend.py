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
    """``graph`` (``PooledStates`` or ``SequenceScores``) as an OpenVINO model."""
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
    GELU inputs) in fp32; ranges come from the calibration passages. The ``PERFORMANCE`` preset
    quantises activations symmetrically: no zero points to subtract around each int8 matmul.
    On the AMX Xeon MiniLM encoded 1.07x the passages per second of the default (mixed) preset
    at the same dev nDCG@10 (docs/benchmarks.md §33).
    """
    nncf = require("nncf", "openvino")
    return nncf.quantize(
        model,
        nncf.Dataset(calibration),
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.PERFORMANCE,
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
    scheme = "nncf.quantize, transformer, performance preset, weights+activations"
    return {
        "int8_scheme": scheme if quantize else None,
        "calibration_texts": len(calibration or []),
    }


def load(folder: Path, names: list[str], threads: int | None) -> dict[str, Tower]:
    """Per tower, one model compiled for one request at a time (LATENCY: one stream on every
    core) and one for parallel requests (THROUGHPUT: OpenVINO's streams, a thread or a few
    each); :func:`_runner` sends a batch of several rows to the second, split across its
    streams. On 2 cores that encoded 1.09x the passages per second of one LATENCY request
    per batch (docs/benchmarks.md §29): small ops (LayerNorm, softmax, GELU) scale badly over
    threads, and two streams keep both cores in large matmuls.
    """
    ov = require("openvino", "openvino")
    core = ov.Core()
    towers = {}
    for name in names:
        model = core.read_model(str(folder / f"{name}.xml"))
        config = {"INFERENCE_PRECISION_HINT": float_precision(model)}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        latency = core.compile_model(model, "CPU", {**config, "PERFORMANCE_HINT": "LATENCY"})
        parallel = core.compile_model(model, "CPU", {**config, "PERFORMANCE_HINT": "THROUGHPUT"})
        towers[name] = _runner(latency, parallel)
    return towers


def float_precision(model) -> str:
    """``INFERENCE_PRECISION_HINT`` for ``model``: bf16 for the float ops of an int8 (NNCF) graph
    where precision ``auto`` resolves to bf16, else f32. On the AMX Xeon, int8 MiniLM encoded
    1.17x the passages per second with bf16 float ops, at the same dev nDCG@10 (+0.0053 vs
    +0.0056 over torch fp32; docs/benchmarks.md §25). ``DENSEKIT_PRECISION=fp32`` keeps f32."""
    quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    return "bf16" if quantized and precision.resolve("auto") == "bf16" else "f32"


def _runner(latency, parallel) -> Tower:
    """One batch: a single row through ``latency``; more rows split into as many contiguous
    parts as ``parallel`` has streams (at most one per row), run at once, joined in order."""
    single = latency.create_infer_request()
    streams = max(1, int(parallel.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    requests = [parallel.create_infer_request() for _ in range(streams)]
    output, parallel_output = latency.output(0), parallel.output(0)

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        rows = len(next(iter(feeds.values())))
        parts = min(streams, rows)
        if parts < 2:
            return single.infer(feeds)[output]
        bounds = np.linspace(0, rows, parts + 1).round().astype(int)
        for request, start, stop in zip(requests, bounds[:-1], bounds[1:], strict=False):
            request.start_async({k: v[start:stop] for k, v in feeds.items()})
        pieces = []
        for request in requests[:parts]:
            request.wait()
            pieces.append(request.get_tensor(parallel_output).data.copy())
        return np.concatenate(pieces)

    return run
