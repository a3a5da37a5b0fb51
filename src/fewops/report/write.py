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
    head = (
        "| method | float acc | simulated acc | LUTs (est.) | adder bits | adds | mults | negs "
        "| table reads | weight bits | params |"
    )
    rows = [head, "|" + "---|" * 11]
    for m in report["methods"]:
        t = m["totals"]
        rows.append(
            f"| {m['method']} | {_fmt(m['accuracy']['float'])} | {_fmt(m['accuracy']['simulated'])} "
            f"| {_fmt(t.get('luts_est'))} | {_fmt(t.get('adder_bits'))} "
            f"| {_fmt(t['adds'])} | {_fmt(t['mults'])} | {_fmt(t['negs'])} | {_fmt(t['table_reads'])} "
            f"| {_fmt(t['weight_bits'])} | {_fmt(t['params'])} |"
        )
    return "\n".join(rows)


def write_markdown(path: Path, report: dict) -> None:
    lines = [
        f"# fewops report: {report['model']} on {report['dataset']}",
        "",
        "Counts are per inference (a convolution's per-position cost times its output positions);",
        "bias additions are counted apart in report.json (`bias_adds`). LUTs are estimated from",
        "the full-adder bits of every adder (8-bit inputs), calibrated against yosys synth_xilinx",
        "(docs/hardware.md).",
        "",
        markdown_table(report),
        "",
    ]
    for m in report["methods"]:
        lines += [
            f"## {m['method']}",
            "",
            "| layer | shape | LUTs (est.) | adder bits | adds | mults | weight bits | params |",
        ]
        lines.append("|---|---|---|---|---|---|---|---|")
        for layer in m["layers"]:
            lines.append(
                f"| {layer['name']} | {layer['shape'][0]}x{layer['shape'][1]} "
                f"| {_fmt(layer.get('luts_est'))} | {_fmt(layer.get('adder_bits'))} "
                f"| {layer['adds']:,} | {layer['mults']:,} | {layer['weight_bits']:,} "
                f"| {layer['params']:,} |"
            )
        lines.append("")
    Path(path).write_text("\n".join(lines))


def plot_pareto(path: Path, report: dict) -> None:
    """Accuracy (simulated where available) against estimated LUTs (left) and adds (right)."""
    import matplotlib  # heavy: matplotlib, only when a report draws figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the Agg backend (no display)
    from matplotlib.ticker import (  # with matplotlib, above
        FuncFormatter,
        LogLocator,
        NullFormatter,
    )

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120, sharey=True)
    panels = (("luts_est", "estimated LUTs per inference"), ("adds", "adds per inference"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for m in report["methods"]:
            acc = m["accuracy"]["simulated"]
            if acc is None:
                acc = m["accuracy"]["float"]
            cost = max(1, m["totals"].get(key) or 0)
            ax.scatter([cost], [100 * acc], s=40)
            ax.annotate(m["method"], (cost, 100 * acc), textcoords="offset points", xytext=(4, 4))
        ax.set_xscale("log")
        # Plain numbers at 1, 2 and 5 times each power of ten: matplotlib's default labels every
        # minor tick (2x10^4, 3x10^4, ...) on narrow spans, and they run into each other.
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{label} (log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle(f"{report['model']} on {report['dataset']}: accuracy against LUTs and adds")
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
