"""ONNX Runtime backend: export with ``torch.onnx.export``, fuse with ORT's transformer optimizer,
optionally quantise to int8 with ``onnxruntime.quantization.quantize_dynamic``, run on CPU.

Why these steps: ORT's CPU speed on encoders comes from its fused kernels (one ``Attention`` op
per layer, ``SkipLayerNormalization``, ``BiasGelu``, ``EmbedLayerNormalization``). The session's
``ORT_ENABLE_ALL`` fuses the layer norms and GELUs but not the attention of a graph traced from
torch; ``onnxruntime.transformers.optimizer`` does, given a graph of the eager attention (the
SDPA one does not match its patterns). The fused graph is portable (no hardware-specific
rewrites), so it is what is saved; ``ORT_ENABLE_ALL`` runs again when a session opens.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from densekit.errors import ConfigError
from densekit.inference.backends.common import Tower, require

OPSET = 17
# Encoders whose attention ORT's "bert" fusion recognises (the probe check catches a miss).
_BERT_LIKE = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert", "mpnet"}


def _trace(graph: nn.Module, sample: dict[str, torch.Tensor], path: Path) -> None:
    """``graph`` (``PooledStates`` or ``SequenceScores``) with dynamic batch and sequence axes."""
    backbone = graph.backbone
    set_attn = getattr(backbone, "set_attn_implementation", None)
    previous = getattr(backbone.config, "_attn_implementation", None)
    axes = {name: {0: "batch", 1: "sequence"} for name in graph.input_names}
    axes[graph.output_name] = dict(enumerate(graph.output_axes))
    try:
        if callable(set_attn):
            set_attn("eager")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph.eval(),
                tuple(sample[name] for name in graph.input_names),
                str(path),
                input_names=list(graph.input_names),
                output_names=[graph.output_name],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many kinds; all mean "cannot export this"
        model_type = getattr(backbone.config, "model_type", "?")
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot export this {model_type} model to ONNX: {first}") from None
    finally:
        if callable(set_attn) and previous:
            set_attn(previous)


def _fuse(path: Path, config) -> None:
    """Replace the graph at ``path`` with ORT's fused transformer graph (BERT-like models)."""
    if getattr(config, "model_type", "") not in _BERT_LIKE:
        return
    optimizer = require("onnxruntime.transformers.optimizer", "onnx")
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", 0)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", 0)
    fused = optimizer.optimize_model(
        str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0
    )
    fused.save_model_to_file(str(path))


def weight_bits(quantize: str | None) -> int | None:
    """Bits of the int8 export's weights on this CPU: 8 where it has VNNI, else 7.

    Without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of products in 16 bits
    (``vpmaddubsw``), which saturates on full 8-bit weights, so weights keep 7 bits
    (``reduce_range``). VNNI's ``vpdpbusd`` adds in 32 bits: full 8-bit weights are exact there,
    and on SciFact dev they keep nDCG@10 within 0.0013 of fp32 where 7 bits lose 0.0093
    (docs/benchmarks.md §22). The bits are part of the export's fingerprint, so an export made on
    one CPU class is redone on the other.
    """
    if quantize != "int8":
        return None
    is_vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)
    return 8 if is_vnni() else 7


def _quantize(path: Path, bits: int) -> None:
    """Dynamic int8: weights quantised once, activations per batch at run time (no calibration).

    Signed int8 weights per output channel (per-tensor scales cost MiniLM 5-20 points of cosine)
    on ``bits`` bits (:func:`weight_bits`; docs/benchmarks.md for the schemes measured).
    """
    quantization = require("onnxruntime.quantization", "onnx")
    fp32 = path.with_suffix(".fp32.onnx")
    path.rename(fp32)
    quantization.quantize_dynamic(
        str(fp32),
        str(path),
        op_types_to_quantize=["MatMul", "Attention"],
        weight_type=quantization.QuantType.QInt8,
        per_channel=True,
        reduce_range=bits < 8,
        # The fused ops (com.microsoft domain) carry no inferred output types: they are float.
        extra_options={"DefaultTensorType": require("onnx", "onnx").TensorProto.FLOAT},
    )
    fp32.unlink()


def scheme(quantize: str | None) -> str | None:
    """What of the export depends on the machine it is made on (part of its fingerprint)."""
    bits = weight_bits(quantize)
    return f"dynamic, s8 weights per channel, {bits} bits" if bits else None


def export(
    graphs: dict[str, nn.Module],
    sample: dict[str, torch.Tensor],
    folder: Path,
    quantize: str | None,
    calibration: list[dict[str, np.ndarray]] | None,
) -> dict:
    """Write ``<name>.onnx`` for each graph (a tower's ``PooledStates``, a reranker's
    ``SequenceScores``) into ``folder``; returns facts for the manifest."""
    require("onnxruntime", "onnx")
    require("onnx", "onnx")
    bits = weight_bits(quantize)
    for name, graph in graphs.items():
        path = folder / f"{name}.onnx"
        _trace(graph, sample, path)
        _fuse(path, graph.backbone.config)
        if bits:
            _quantize(path, bits)
    return {"opset": OPSET, "int8_scheme": scheme(quantize)}


def load(folder: Path, names: list[str], threads: int | None) -> dict[str, Tower]:
    """One CPU inference session per tower, all graph optimisations on.

    With ``threads`` given (a server sharing its cores with request handling) worker threads
    sleep between calls instead of spinning, so they do not take the cores from the rest.
    """
    ort = require("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or 0  # 0: ORT's default, one per physical core
    if threads:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    towers: dict[str, Tower] = {}
    for name in names:
        session = ort.InferenceSession(
            str(folder / f"{name}.onnx"), options, providers=["CPUExecutionProvider"]
        )
        towers[name] = _runner(session)
    return towers


def _runner(session) -> Tower:
    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(None, feeds)[0]

    return run
