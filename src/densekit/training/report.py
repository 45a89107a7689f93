"""What a training run did, for a person: curves as a PNG and a ``report.md``.

The curves are the Trainer's own log history (training loss, learning rate, every ``eval_*``
metric against the step); the report adds the final metrics, the data sizes, the time per
stage and the resolved arguments, so a run explains itself without its logs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from densekit.atomic import atomic_open

CURVES_FILE = "training_curves.png"
REPORT_FILE = "report.md"
_NOT_CURVES = ("runtime", "per_second", "seconds", "epoch", "total_flos")


def curves(log_history: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """``{name: [(step, value), ...]}`` for the loss, the learning rate and each eval metric."""
    out: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        step = int(entry.get("step", 0))
        for name, value in entry.items():
            wanted = name in ("loss", "learning_rate") or name.startswith("eval_")
            if wanted and not any(part in name for part in _NOT_CURVES):
                out.setdefault(name, []).append((step, float(value)))
    return out


def plot_curves(series: Mapping[str, list[tuple[int, float]]], path: str | Path) -> None:
    """One panel each for loss, learning rate and eval metrics, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {
        "training loss": [n for n in series if n == "loss"],
        "learning rate": [n for n in series if n == "learning_rate"],
        "evaluation": [n for n in series if n.startswith("eval_")],
    }
    groups = {title: names for title, names in groups.items() if names}
    figure, axes = plt.subplots(1, max(len(groups), 1), figsize=(5 * max(len(groups), 1), 3.6))
    axes = axes if hasattr(axes, "__len__") else [axes]
    for axis, (title, names) in zip(axes, groups.items(), strict=False):
        for name in names:
            steps, values = zip(*series[name], strict=True)
            axis.plot(steps, values, marker="o" if len(steps) < 30 else None, label=name)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.legend(fontsize="small")
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)


def write_report(
    folder: str | Path,
    log_history: Sequence[Mapping[str, Any]],
    arguments: Mapping[str, Any],
    data_sizes: Mapping[str, int],
    stage_seconds: Mapping[str, float],
) -> None:
    """``training_curves.png`` and ``report.md`` in ``folder``."""
    folder = Path(folder)
    series = curves(log_history)
    plot_curves(series, folder / CURVES_FILE)
    finals = {name: points[-1][1] for name, points in series.items() if name.startswith("eval_")}
    lines = ["# Training report", "", f"![curves]({CURVES_FILE})", "", "## Curves", ""]
    lines += ["| curve | points | last step | last value |", "|---|---|---|---|"]
    lines += [f"| {n} | {len(p)} | {p[-1][0]} | {p[-1][1]:.6g} |" for n, p in series.items()]
    lines += ["", "## Final evaluation", ""]
    lines += [f"- {name}: {value:.4f}" for name, value in finals.items()] or ["- none"]
    lines += ["", "## Data", ""] + [f"- {name}: {count}" for name, count in data_sizes.items()]
    lines += ["", "## Time per stage (s)", ""]
    lines += [f"- {name}: {seconds:.1f}" for name, seconds in stage_seconds.items()]
    lines += [
        "",
        "## Resolved arguments",
        "",
        "```json",
        json.dumps(arguments, indent=2, default=str),
    ]
    lines += ["```", ""]
    with atomic_open(folder / REPORT_FILE, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
