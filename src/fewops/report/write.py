"""report.json, report.md and pareto.png from a list of method entries."""

from __future__ import annotations

import json
from pathlib import Path

from fewops.io.tensors import atomic_write

SCHEMA_VERSION = 1


def build_report(dataset: str, model: str, methods: list[dict], **extra) -> dict:
    return {
        "schema": SCHEMA_VERSION,
        "dataset": dataset,
        "model": model,
        **extra,
        "methods": methods,
    }


def write_json_atomic(path: Path, payload: dict) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")

    atomic_write(path, write)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.2f}%"
    return f"{value:,}"


def markdown_table(report: dict) -> str:
    head = "| method | float acc | simulated acc | adds | mults | negs | table reads | weight bits | params |"
    rows = [head, "|" + "---|" * 9]
    for m in report["methods"]:
        t = m["totals"]
        rows.append(
            f"| {m['method']} | {_fmt(m['accuracy']['float'])} | {_fmt(m['accuracy']['simulated'])} "
            f"| {_fmt(t['adds'])} | {_fmt(t['mults'])} | {_fmt(t['negs'])} | {_fmt(t['table_reads'])} "
            f"| {_fmt(t['weight_bits'])} | {_fmt(t['params'])} |"
        )
    return "\n".join(rows)


def write_markdown(path: Path, report: dict) -> None:
    lines = [
        f"# fewops report: {report['model']} on {report['dataset']}",
        "",
        "Counts are per inference (a convolution's per-position cost times its output positions);",
        "bias additions are counted apart in report.json (`bias_adds`).",
        "",
        markdown_table(report),
        "",
    ]
    for m in report["methods"]:
        lines += [
            f"## {m['method']}",
            "",
            "| layer | shape | adds | mults | weight bits | params |",
        ]
        lines.append("|---|---|---|---|---|---|")
        for layer in m["layers"]:
            lines.append(
                f"| {layer['name']} | {layer['shape'][0]}x{layer['shape'][1]} | {layer['adds']:,} "
                f"| {layer['mults']:,} | {layer['weight_bits']:,} | {layer['params']:,} |"
            )
        lines.append("")
    Path(path).write_text("\n".join(lines))


def plot_pareto(path: Path, report: dict) -> None:
    """Accuracy (simulated where available) against adds, one point per method."""
    import matplotlib  # heavy: matplotlib, only when a report draws figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the Agg backend (no display)

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for m in report["methods"]:
        acc = m["accuracy"]["simulated"]
        if acc is None:
            acc = m["accuracy"]["float"]
        adds = max(1, m["totals"]["adds"])
        ax.scatter([adds], [100 * acc], s=40)
        ax.annotate(m["method"], (adds, 100 * acc), textcoords="offset points", xytext=(4, 4))
    ax.set_xscale("log")
    ax.set_xlabel("adds per inference (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{report['model']} on {report['dataset']}: accuracy against adds")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(out_dir: Path, report: dict) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "pareto": out_dir / "pareto.png",
    }
    write_json_atomic(paths["json"], report)
    write_markdown(paths["markdown"], report)
    plot_pareto(paths["pareto"], report)
    return paths
