"""A real ``densekit serve`` on 127.0.0.1: a bounded load (2,000 requests from 16 concurrent
clients) with no error and every answer equal to the same query asked alone; the server writes
nothing into what it serves; a broken folder stops start-up with one line."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import serving

pytest.importorskip("fastapi")

CLIENTS, REQUESTS = 16, 2000
QUERIES = [
    "vitamin D deficiency and bone fractures",
    "insulin resistance in obesity",
    "T cell response to vaccines",
    "protein kinase signalling pathways",
    "tumour suppressor genes",
    "antibiotic resistance",
    "neuronal development in the cortex",
    "stem cell therapy",
]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _ranking(answer: dict) -> list[tuple[str, float]]:
    return [(hit["docid"], hit["score"]) for hit in answer["hits"]]


def test_load_from_concurrent_clients_answers_as_alone(searcher_dir):
    before = _digest(searcher_dir)
    cases = [(q, mode, k) for q in QUERIES for mode in ("bm25", "dense", "hybrid") for k in (5, 20)]
    with serving(searcher_dir) as url:
        with httpx.Client(base_url=url, timeout=30) as http:
            alone = {
                case: http.get(
                    "/search", params=dict(zip(("q", "mode", "k"), case, strict=True))
                ).json()
                for case in cases
            }

        def client(worker: int) -> list[tuple[tuple, int, dict]]:
            out = []
            with httpx.Client(base_url=url, timeout=60) as http:
                for i in range(worker, REQUESTS, CLIENTS):
                    case = cases[i % len(cases)]
                    response = http.get(
                        "/search", params=dict(zip(("q", "mode", "k"), case, strict=True))
                    )
                    out.append((case, response.status_code, response.json()))
            return out

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [a for part in pool.map(client, range(CLIENTS)) for a in part]
    assert len(answers) == REQUESTS
    assert [status for _, status, _ in answers].count(200) == REQUESTS
    for case, _, answer in answers:
        expected = _ranking(alone[case])
        got = _ranking(answer)
        assert [d for d, _ in got] == [d for d, _ in expected], case
        # batched with other queries, the encoder runs other matmul shapes: last-bit differences
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-5)
    assert _digest(searcher_dir) == before


def test_a_broken_folder_stops_startup_in_one_line(tmp_path):
    (tmp_path / "searcher").mkdir()
    (tmp_path / "searcher" / "searcher.json").write_text("{not json")
    for folder in (tmp_path / "nowhere", tmp_path):
        proc = subprocess.run(
            [sys.executable, "-m", "densekit.commands.serve", str(folder), "--port", "1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("densekit: error:"), proc.stderr
