"""Runners for the outside HDL tools: iverilog/vvp, verilator and yosys.

A missing tool is an error that names it and the Debian package that provides it; nothing is
skipped silently.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

APT_PACKAGES = {"iverilog": "iverilog", "vvp": "iverilog", "yosys": "yosys"}
APT_PACKAGES["verilator"] = "verilator"
MIN_VERILATOR = (5, 0)
YOSYS_TARGETS = ("proc", "generic", "xilinx", "xilinx-fast")
_RESULT = re.compile(r"RESULT (\d+) passed, (\d+) failed")


class ToolNotFoundError(RuntimeError):
    """An HDL tool is missing (or too old); the message says how to install it."""


def require_tool(tool: str) -> str:
    """Full path of ``tool``, or a :class:`ToolNotFoundError` naming the package to install."""
    path = shutil.which(tool)
    if path is None:
        package = APT_PACKAGES.get(tool, tool)
        raise ToolNotFoundError(
            f"{tool} was not found on PATH; install it with `apt-get install {package}` "
            f"(Debian/Ubuntu package {package!r})."
        )
    return path


def _run(cmd: list[str], cwd: Path, timeout: float, what: str) -> str:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{what} did not finish within {timeout} s: {' '.join(cmd)}") from exc
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed with exit code {proc.returncode}: {' '.join(cmd)}\n{log[-4000:]}"
        )
    return log


@dataclass(frozen=True)
class SimResult:
    """Outcome of one self-checking bench: vectors that matched, vectors that did not."""

    passed: int
    failed: int
    simulator: str
    log: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.passed > 0

    @property
    def mismatches(self) -> list[str]:
        return [line for line in self.log.splitlines() if line.startswith("MISMATCH")]


def parse_result(log: str, simulator: str) -> SimResult:
    found = _RESULT.findall(log)
    if not found:
        raise RuntimeError(
            f"The {simulator} run printed no 'RESULT <p> passed, <f> failed' line; "
            f"its output ends with:\n{log[-2000:]}"
        )
    passed, failed = (int(v) for v in found[-1])
    return SimResult(passed=passed, failed=failed, simulator=simulator, log=log)


def run_iverilog(sources, top: str, workdir, timeout: float = 600) -> SimResult:
    """Compile ``sources`` with iverilog (top ``top``), run with vvp in ``workdir``; parse."""
    iverilog = require_tool("iverilog")
    vvp = require_tool("vvp")
    workdir = Path(workdir).resolve()  # the tools run inside it: relative paths would double
    image = workdir / f"{top}.vvp"
    files = [str(Path(s).resolve()) for s in sources]
    _run([iverilog, "-g2012", "-s", top, "-o", str(image), *files], workdir, timeout, "iverilog")
    log = _run([vvp, "-n", str(image)], workdir, timeout, "vvp")
    return parse_result(log, "iverilog")


def verilator_version() -> tuple[int, int]:
    """(major, minor) of the installed verilator, or ToolNotFoundError."""
    exe = require_tool("verilator")
    text = subprocess.run(
        [exe, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    match = re.search(r"Verilator (\d+)\.(\d+)", text)
    if not match:
        raise ToolNotFoundError(f"Could not read verilator's version from {text!r}.")
    return int(match.group(1)), int(match.group(2))


def run_verilator(sources, top: str, workdir, timeout: float = 600) -> SimResult:
    """Build the bench with ``verilator --binary`` (needs 5.0 or newer) and run it."""
    version = verilator_version()
    if version < MIN_VERILATOR:
        need = ".".join(map(str, MIN_VERILATOR))
        raise ToolNotFoundError(
            f"verilator {version[0]}.{version[1]:03d} is too old: the testbench needs "
            f"verilator {need} or newer (--binary, --timing); install a newer one "
            "(`apt-get install verilator` on Debian 12 gives 5.006)."
        )
    workdir = Path(workdir).resolve()
    obj = workdir / f"obj_{top}"
    files = [str(Path(s).resolve()) for s in sources]
    cmd = [
        require_tool("verilator"),
        "--binary",
        "--timing",
        "-Wno-fatal",
        "-Wno-WIDTH",
        "--top-module",
        top,
        "-Mdir",
        str(obj),
        "-o",
        f"V{top}",
        *files,
    ]
    _run(cmd, workdir, timeout, "verilator")
    log = _run([str(obj / f"V{top}")], workdir, timeout, "verilated bench")
    return parse_result(log, "verilator")


@dataclass(frozen=True)
class YosysStats:
    """Cell counts of a design after a yosys flow (``target``), summed over the hierarchy."""

    target: str
    cells: dict[str, int]
    log: str = field(default="", repr=False)

    @property
    def num_cells(self) -> int:
        return sum(self.cells.values())

    @property
    def adders(self) -> int:
        """$add plus $sub cells (meaningful after ``proc``, before mapping)."""
        return self.cells.get("$add", 0) + self.cells.get("$sub", 0)

    @property
    def luts(self) -> int:
        """LUT1..LUT6 cells (after ``synth_xilinx``)."""
        return sum(v for k, v in self.cells.items() if re.fullmatch(r"LUT\d", k))

    @property
    def carries(self) -> int:
        return sum(v for k, v in self.cells.items() if k.startswith("CARRY"))

    @property
    def flipflops(self) -> int:
        return sum(v for k, v in self.cells.items() if re.fullmatch(r"FD[A-Z]*|\$_DFF\w*|\$dff", k))


def run_yosys(sources, top: str, target: str = "generic", timeout: float = 3600) -> YosysStats:
    """Cell counts of ``top`` after a yosys flow.

    ``target``: ``"proc"`` elaborates only (``hierarchy; proc``: no optimisation, so every
    ``+``/``-`` stays one $add/$sub cell), ``"generic"`` runs ``synth -flatten`` (gate cells),
    ``"xilinx"`` runs ``synth_xilinx -flatten`` (LUTs, CARRY4 chains and flip-flops of 7-series)
    and ``"xilinx-fast"`` the same script up to and including its LUT mapping by ``abc``, with the
    final 1:1 techmap of ``$lut`` cells to LUT primitives done by counting (see
    :data:`XILINX_FAST` and docs/hardware.md: on the 64x64 CSD layer that techmap was the slowest
    pass, and the counts agree with the full flow to within 5 LUTs in 88,900).
    """
    if target not in YOSYS_TARGETS:
        raise ValueError(f"Unknown yosys target {target!r}; choose one of {YOSYS_TARGETS}.")
    yosys = require_tool("yosys")
    if isinstance(sources, str | Path):
        sources = [sources]
    files = [str(Path(s).resolve()) for s in sources]
    flow = {
        "proc": f"hierarchy -check -top {top}; proc",
        "generic": f"synth -flatten -top {top}",
        "xilinx": f"synth_xilinx -flatten -top {top}",
        "xilinx-fast": XILINX_FAST.format(top=top),
    }[target]
    reads = "; ".join(f"read_verilog -sv {f}" for f in files)
    with tempfile.TemporaryDirectory(prefix="fewops_yosys_") as tmp:
        stat_file = Path(tmp) / "stat.json"
        script = f"{reads}; {flow}; tee -q -o {stat_file} stat -json"
        if target == "xilinx-fast":
            script += "".join(
                f"; tee -q -a {tmp}/widths.txt select -count t:$lut r:WIDTH={w} %i"
                for w in range(1, 9)
            )
            script += f"; tee -q -o {tmp}/lut1.txt dump t:$lut r:WIDTH=1 %i"
        log = _run([yosys, "-q", "-p", script], Path(files[0]).parent, timeout, "yosys")
        data = json.loads(stat_file.read_text())
        if "design" in data:
            cells = data["design"].get("num_cells_by_type", {})
        else:
            cells = {}
            for module in data.get("modules", {}).values():
                for k, v in module.get("num_cells_by_type", {}).items():
                    cells[k] = cells.get(k, 0) + v
        cells = {k: int(v) for k, v in cells.items()}
        if target == "xilinx-fast":
            widths = [
                int(n) for n in re.findall(r"(\d+) objects", (Path(tmp) / "widths.txt").read_text())
            ]
            inverters = len(
                re.findall(r"parameter \\LUT 2'01\b", (Path(tmp) / "lut1.txt").read_text())
            )
            cells = map_luts_by_count(cells, widths, inverters)
    return YosysStats(target=target, cells=cells, log=log)


# synth_xilinx up to its LUT mapping (begin .. map_ffs), then map_luts' own first three commands.
# What the full script does next is 1:1 bookkeeping on this netlist: techmap turns every $lut
# into a primitive (lut_map.v), xilinx_dffopt and opt_lut_ins only touch flip-flops and LUT
# inputs; map_luts_by_count does that mapping by arithmetic instead of by techmap.
XILINX_FAST = (
    "synth_xilinx -flatten -top {top} -run begin:map_luts; "
    "opt_expr -mux_undef -noclkinv; abc -luts 2:2,3,6:5,10,20; clean"
)


def map_luts_by_count(cells: dict[str, int], widths: list[int], inverters: int) -> dict[str, int]:
    """Replace ``$lut`` cells by the primitives yosys' xilinx lut_map.v makes of them.

    ``widths[w-1]`` is the number of ``$lut`` cells with w inputs (w = 1..8), ``inverters`` how
    many 1-input ones invert (they become INV, not LUT1). A 7-input LUT is two LUT6 and a MUXF7,
    an 8-input one four LUT6, two MUXF7 and a MUXF8.
    """
    if len(widths) != 8 or sum(widths) != cells.get("$lut", 0):
        raise RuntimeError(
            f"yosys reported {cells.get('$lut', 0)} $lut cells but {sum(widths)} by width "
            f"({widths}); cannot map them by count."
        )
    out = {k: v for k, v in cells.items() if k != "$lut"}

    def add(kind: str, n: int) -> None:
        if n:
            out[kind] = out.get(kind, 0) + n

    add("INV", inverters)
    add("LUT1", widths[0] - inverters)
    for w in range(2, 7):
        add(f"LUT{w}", widths[w - 1])
    add("LUT6", 2 * widths[6] + 4 * widths[7])
    add("MUXF7", widths[6] + 2 * widths[7])
    add("MUXF8", widths[7])
    return out
