"""Summary of one GPU check: OUT/summary.json and OUT/summary.md from what the steps wrote.

    python bench/gpu_summary.py OUT [--seconds N]

Reads OUT/pytest.xml (the GPU tests), OUT/details.jsonl (numbers the tests measured),
OUT/install.json and OUT/bench.json when present. Exit status: 0 when nothing failed (also
when there is no CUDA device and everything was skipped), 1 when a test failed or errored.
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from pathlib import Path


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def tests_from_junit(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or node.text or "").strip()
                break
        rows.append(
            {
                "test": name,
                "outcome": outcome,
                "seconds": float(case.get("time", 0)),
                "message": message,
            }
        )
    return rows


def details(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
    return str(value)


def markdown(summary: dict) -> str:
    lines = ["# densekit GPU check", ""]
    device = summary.get("device")
    if not summary["cuda"]:
        lines += [
            "**No CUDA device here: nothing ran on a GPU.** The GPU tests were collected and "
            "skipped (below); run `bash bench/gpu_check.sh OUT` on a GPU machine.",
            "",
        ]
    else:
        lines += [f"Device: {device}", ""]
    counts = summary["counts"]
    lines += [
        f"Tests: {counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
        f"{counts['skipped']} skipped; {summary.get('seconds', '?')} s in all.",
        "",
        "| test | outcome | s | note |",
        "|---|---|---:|---|",
    ]
    for row in summary["tests"]:
        note = row["message"].splitlines()[0][:160] if row["message"] else ""
        lines.append(f"| {row['test']} | {row['outcome']} | {row['seconds']:.1f} | {note} |")
    if summary["details"]:
        lines += ["", "## Measured by the tests", ""]
        for entry in summary["details"]:
            fields = ", ".join(f"{k} {fmt(v)}" for k, v in entry.items() if k != "test")
            lines.append(f"- `{entry['test']}`: {fields[:600]}")
    bench = summary.get("bench") or {}
    if bench and "skipped" not in bench:
        lines += ["", "## Throughput (medians; bench/gpu_bench.py)", ""]
        lines.append(f"MiniLM weights: {bench.get('minilm', '?')}")
        lines += [
            "",
            "| run | densekit | sentence-transformers | densekit / ST speed |",
            "|---|---:|---:|---:|",
        ]
        for key in ("train_minilm", "train_decoder_0.5b"):
            part = bench.get(key) or {}
            if "densekit" in part:
                lines.append(
                    f"| {key} (bf16, {part['batch']['queries']} q × {part['batch']['group']}) | "
                    f"{part['densekit']['ms_per_step']:.1f} ms/step | {part['st']['ms_per_step']:.1f} ms/step | "
                    f"{part['speedup_densekit_over_st']:.2f} |"
                )
            elif part:
                lines.append(
                    f"| {key} | {fmt(part.get('error') or part.get('skipped'))[:200]} | | |"
                )
        enc = bench.get("encode_minilm") or {}
        if "st-fp16" in enc:
            lines.append(
                f"| encode {enc['passages']} passages (fp16) | "
                f"{enc['densekit-fp16']['passages_per_s']:.0f} passages/s "
                f"(bf16 autocast {enc['densekit-bf16-autocast']['passages_per_s']:.0f}) | "
                f"{enc['st-fp16']['passages_per_s']:.0f} passages/s | "
                f"{enc['speedup_densekit_fp16_over_st_fp16']:.2f} |"
            )
            lines.append("")
            lines.append(
                f"Cosine densekit fp16 vs ST fp16 vectors: {enc['cosine_densekit_fp16_vs_st_fp16']}"
            )
        elif enc:
            lines.append(f"| encode | {fmt(enc.get('error'))[:200]} | | |")
    install = summary.get("install")
    if install:
        lines += ["", "## Installed from the wheel folder", ""]
        for action in install.get("actions", []):
            lines.append(f"- {json.dumps(action)[:400]}")
        for module, status in (install.get("imports") or {}).items():
            lines.append(f"- import {module}: {status[:200]}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--cuda", type=int, default=None)
    parser.add_argument("--device", default="")
    args = parser.parse_args()
    out = Path(args.out)
    tests = tests_from_junit(out / "pytest.xml")
    counts = {
        k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")
    }
    summary = {
        "cuda": bool(args.cuda),
        "device": args.device or None,
        "seconds": args.seconds,
        "counts": counts,
        "tests": tests,
        "details": details(out / "details.jsonl"),
        "install": read_json(out / "install.json"),
        "bench": read_json(out / "bench.json"),
    }
    if not tests:
        summary["problem"] = "no test results (pytest.xml missing): see gpu_check.log"
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    print((out / "summary.md").read_text())
    failed = counts["failed"] + counts["error"] > 0 or not tests
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
