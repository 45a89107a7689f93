"""The sentence-transformers side of ``bench/encode_backends.py``, run in ``.venv-st``.

sentence-transformers' ONNX/OpenVINO backends need optimum, which pins transformers < 4.58, so
they cannot share densekit's environment (transformers 5); ``bench/setup_st_backends.sh`` makes
``.venv-st`` and this worker runs there, driven over stdin/stdout by the bench:

  start    export every variant the way ST's documentation does it, into a private copy of the
           model: ``export_dynamic_quantized_onnx_model(model, "avx2"|"avx512_vnni", path)`` and
           ``export_static_quantized_openvino_model(model, OVQuantizationConfig(), path, ...)``
           (calibrated on the bench's own corpus sample, given as a local dataset, since the
           default GLUE download is not possible offline); then print one JSON line "ready".
  request  {"variant": name, "texts": file.json, "is_query": bool, "out": file.npy}: encode,
           save the vectors, print {"seconds": s} (encode time only, measured here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.backend import (
    export_dynamic_quantized_onnx_model,
    export_static_quantized_openvino_model,
)

OV_Q8 = "openvino/openvino_model_qint8_quantized.xml"


def export_all(model: Path, calibration: list[str], onnx_config: str) -> None:
    """ST's own export calls, as its efficiency page shows them."""
    from optimum.intel import OVQuantizationConfig

    onnx = SentenceTransformer(str(model), backend="onnx", device="cpu")
    onnx.save_pretrained(str(model))  # writes onnx/model.onnx next to the weights
    export_dynamic_quantized_onnx_model(onnx, onnx_config, str(model))
    ov = SentenceTransformer(str(model), backend="openvino", device="cpu")
    ov.save_pretrained(str(model))  # openvino/openvino_model.xml
    data = model.parent / "calibration"
    data.mkdir(exist_ok=True)
    with open(data / "train.jsonl", "w", encoding="utf-8") as handle:
        for text in calibration:
            handle.write(json.dumps({"sentence": text}) + "\n")
    export_static_quantized_openvino_model(
        ov,
        OVQuantizationConfig(num_samples=len(calibration)),
        str(model),
        dataset_name=str(data),
        dataset_config_name="default",
        dataset_split="train",
        column_name="sentence",
    )


def load(model: Path, variant: str, onnx_config: str, max_len: int) -> SentenceTransformer:
    kwargs: dict = {"device": "cpu"}
    if variant == "st-onnx":
        kwargs |= {"backend": "onnx", "model_kwargs": {"file_name": "onnx/model.onnx"}}
    elif variant == "st-onnx-q8":  # ST names it by weight type: quint8 for avx2, qint8 for vnni
        (quantized,) = model.glob(f"onnx/model_q*int8_{onnx_config}.onnx")
        file_name = quantized.relative_to(model).as_posix()
        kwargs |= {"backend": "onnx", "model_kwargs": {"file_name": file_name}}
    elif variant == "st-ov":
        kwargs |= {
            "backend": "openvino",
            "model_kwargs": {"file_name": "openvino/openvino_model.xml"},
        }
    elif variant == "st-ov-q8":
        kwargs |= {"backend": "openvino", "model_kwargs": {"file_name": OV_Q8}}
    st = SentenceTransformer(str(model), **kwargs)
    st.max_seq_length = max_len
    return st


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--calibration", required=True, help="JSON list of passages")
    p.add_argument("--variants", required=True, help="comma-separated st-* names")
    p.add_argument("--onnx_config", default="avx2")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--max_len", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    model = Path(args.workdir) / "st-model"
    if not model.exists():
        shutil.copytree(args.model, model)
    calibration = json.loads(Path(args.calibration).read_text(encoding="utf-8"))
    started = time.perf_counter()
    export_all(model, calibration, args.onnx_config)
    exported = time.perf_counter() - started
    models = {v: load(model, v, args.onnx_config, args.max_len) for v in args.variants.split(",")}
    versions = {"sentence_transformers": sys.modules["sentence_transformers"].__version__}
    print(json.dumps({"ready": True, "export_seconds": exported, **versions}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        texts = json.loads(Path(request["texts"]).read_text(encoding="utf-8"))
        st = models[request["variant"]]
        start = time.perf_counter()
        vectors = st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)
        seconds = time.perf_counter() - start
        np.save(request["out"], np.asarray(vectors, dtype=np.float32))
        print(json.dumps({"seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
