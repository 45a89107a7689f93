"""Install, on the GPU machine, what the GPU check needs and the image lacks, from the wheel
folder only (``pip --no-index``), never touching torch; then densekit itself with --no-deps.

    python bench/gpu_install.py --wheels gpu_wheels --out OUT/install.json

Each top-level package (deepspeed, bitsandbytes, datasets, faiss-cpu) is installed only when missing,
pip resolving its dependencies against the image and the folder, with torch pinned by a
constraint to the version installed (so an install that wanted another torch fails instead).
If that resolution fails (say the image has a newer fsspec than datasets allows and the
folder's older one cannot replace it), the package and its carried dependencies that are
missing go in with --no-deps, and the pip error is recorded. Results go to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
TOP = ("deepspeed", "bitsandbytes", "datasets", "faiss-cpu")


def norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def carried(folder: Path) -> dict[str, list[Path]]:
    """Wheels of the folder by normalised distribution name."""
    out: dict[str, list[Path]] = {}
    for wheel in sorted(folder.glob("*.whl")):
        out.setdefault(norm(wheel.name.split("-")[0]), []).append(wheel)
    return out


def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        headers = Parser().parsestr(zf.read(meta).decode())
    reqs = []
    for line in headers.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            reqs.append(req)
    return reqs


def pip(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def closure(name: str, wheels: dict[str, list[Path]]) -> list[str]:
    """``name`` and its carried dependencies (recursively) that the environment lacks."""
    todo, seen, out = [name], set(), []
    while todo:
        current = norm(todo.pop())
        if current in seen or current not in wheels:
            continue
        seen.add(current)
        out.append(current)
        for req in requirements(wheels[current][0]):
            if installed(req.name) is None:
                todo.append(req.name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", default=str(ROOT / "gpu_wheels"))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    folder = Path(args.wheels)
    report: dict = {"python": sys.version.split()[0], "executable": sys.executable, "actions": []}
    torch_version = installed("torch")
    report["torch"] = torch_version
    if not folder.is_dir():
        report["error"] = f"no wheel folder {folder}: run bash bench/gpu_wheels.sh on a CPU machine"
    else:
        wheels = carried(folder)
        constraints = Path(tempfile.mkdtemp()) / "constraints.txt"
        constraints.write_text(f"torch=={torch_version}\n" if torch_version else "")
        base = ["install", "--no-index", "--find-links", str(folder), "--no-cache-dir"]
        base += ["-c", str(constraints)]
        for name in TOP:
            have = installed(name)
            if have is not None:
                report["actions"].append({"package": name, "present": have})
                continue
            if norm(name) not in wheels:
                report["actions"].append({"package": name, "error": "not in the wheel folder"})
                continue
            proc = pip(*base, name)
            action = {"package": name, "resolved": proc.returncode == 0}
            if proc.returncode != 0:
                action["pip_error"] = proc.stderr.strip()[-1500:]
                names = closure(name, wheels)
                files = [str(w) for n in names for w in wheels[n]]
                retry = pip(*base, "--no-deps", *files)
                action["no_deps"] = names
                action["no_deps_ok"] = retry.returncode == 0
                if retry.returncode != 0:
                    action["no_deps_error"] = retry.stderr.strip()[-1500:]
            action["version"] = installed(name)
            report["actions"].append(action)
        report["torch_after"] = installed("torch")
        assert report["torch_after"] == torch_version, "torch changed: this must never happen"
    # densekit itself: no dependencies, from the working tree (PYTHONPATH=src is the fallback)
    proc = pip("install", "--no-deps", "--no-index", "--no-build-isolation", "-e", str(ROOT))
    report["densekit_install"] = "ok" if proc.returncode == 0 else proc.stderr.strip()[-800:]
    checks = {}
    modules = (
        "densekit",
        "datasets",
        "deepspeed",
        "bitsandbytes",
        "faiss",
        "sentence_transformers",
    )
    for module in modules:
        code = f"import {module} as m; print(getattr(m, '__version__', '?'), m.__file__)"
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        last = (run.stdout.strip().splitlines() or [""])[-1]
        checks[module] = last if run.returncode == 0 else "FAILED: " + run.stderr.strip()[-400:]
    report["imports"] = checks
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for key, value in checks.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
