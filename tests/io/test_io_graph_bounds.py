"""Graph .npz files: declared sizes, dtypes, shifts and widths are checked before allocation."""

import re
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from fewops.cli.main import main
from fewops.codes import csd
from fewops.graph.io import GraphLimits, load_graph, save_graph, width_bound
from fewops.graph.widths import datapath_bits


def _chain(n, shift):
    """An add chain x1 + (x0 << shift) ... n deep: tiny on disk, n * shift bits wide."""
    op = [0, 0] + [3] * n + [7]
    a = [-1, -1, 1] + list(range(2, n + 1)) + [n + 1]
    b = [-1, -1] + [0] * n + [-1]
    sa = [0, 0] + [shift] * n + [0]
    const = [0, 1] + [0] * (n + 1)
    return {
        k: np.array(v, dtype=np.int64)
        for k, v in zip(
            ("op", "a", "b", "sa", "sb", "const"), (op, a, b, sa, [0] * (n + 3), const), strict=True
        )
    }


def test_a_5000_node_chain_of_wide_shifts_is_refused_in_a_second(tmp_path):
    # audit 5n: a 240 KB file made a 5,118,985-bit output port and ran out of memory
    path = tmp_path / "chain.npz"
    np.savez_compressed(path, **_chain(5000, 1024))
    message = (
        f"The graph in {path} has a shift sa=1024, beyond the limit max_shift=256; raise the "
        "limit to read it."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load_graph(path)
    np.savez_compressed(path, **_chain(5000, 200))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=re.escape("beyond the limit max_bits=1024; raise")):
        load_graph(path)
    assert time.perf_counter() - t0 < 2.0


def test_the_width_bound_is_an_upper_bound_and_a_raised_limit_reads_the_file(tmp_path):
    g = csd.encode(np.random.default_rng(0).standard_normal((6, 5)), 8).graph
    assert datapath_bits(g) <= width_bound(g) <= datapath_bits(g) + 8
    path = save_graph(g, tmp_path / "g.npz")
    with pytest.raises(ValueError, match="beyond the limit max_bits=4"):
        load_graph(path, limits=GraphLimits(max_bits=4))
    assert load_graph(path).num_nodes == g.num_nodes


def test_float_arrays_are_refused_not_truncated(tmp_path):
    # audit 5k: x.5 values were silently truncated to integers
    g = csd.encode(np.eye(3), 4).graph
    arrays = {k: getattr(g, k) for k in ("op", "a", "b", "sa", "sb", "const")}
    arrays["sa"] = arrays["sa"] + 0.5
    path = tmp_path / "f.npz"
    np.savez(path, **arrays)
    message = f"The graph array 'sa' in {path} has dtype float64; graph arrays hold integers."
    with pytest.raises(ValueError, match=re.escape(message)):
        load_graph(path)


def _npz_with_header(tmp_path, shape_text):
    header = "{'descr': '<i8', 'fortran_order': False, 'shape': " + shape_text + ", }"
    header = header.ljust(118) + "\n"
    body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w") as z:
        for k in ("op", "a", "b", "sa", "sb", "const"):
            z.writestr(f"{k}.npy", body)
    return path


def test_a_member_declaring_10_to_the_12_entries_is_refused_before_reading(tmp_path):
    # audit 5k: an ArrayMemoryError traceback
    path = _npz_with_header(tmp_path, "(1000000000000,)")
    message = (
        f"The graph array 'op' in {path} declares 1000000000000 nodes, beyond the limit "
        "max_nodes=4194304; raise the limit to read it."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load_graph(path)


def test_a_zip_bomb_is_refused_by_its_declared_size_without_decompressing(tmp_path):
    # audit 5k: 292 KB -> 300 MB took 344 MB before it was refused
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k in ("op", "a", "b", "sa", "sb", "const"):
            with z.open(f"{k}.npy", "w", force_zip64=True) as member:
                chunk = bytes(1 << 20)
                for _ in range(48):
                    member.write(chunk)
    tracemalloc.start()
    try:
        with pytest.raises(
            ValueError, match=re.escape(f"The graph array 'op' in {path} declares 50331648 bytes")
        ):
            load_graph(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_the_cli_refuses_a_hostile_graph_with_rc_2_and_takes_a_limit(tmp_path, capsys):
    path = tmp_path / "chain.npz"
    np.savez_compressed(path, **_chain(3, 300))
    assert main(["export", "--verilog", str(tmp_path / "v"), "--graph", str(path)]) == 2
    assert "beyond the limit max_shift=256" in capsys.readouterr().err
    argv = ["export", "--verilog", str(tmp_path / "v"), "--graph", str(path)]
    assert main([*argv, "--limit", "max_shift=400"]) == 0
    assert (tmp_path / "v" / "layer.v").exists()
