"""Nothing in the source unpickles: a scan for the calls that can run code from data."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [ROOT / "src", ROOT / "benchmarks"]


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def unpickling_calls(text: str, where: str) -> list[str]:
    """Each ``torch.load`` without ``weights_only=True``, each use of ``pickle`` (or cPickle,
    dill, joblib.load, ``np.load(..., allow_pickle=True)``) in ``text``, as "file:line what"."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            for n in names:
                if n.split(".")[0] in ("pickle", "cPickle", "_pickle", "dill", "cloudpickle"):
                    found.append(f"{where}:{node.lineno} imports {n}")
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        if func.endswith("torch.load"):
            flag = _keyword(node, "weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"{where}:{node.lineno} {func} without weights_only=True")
        if re.fullmatch(r"(np|numpy)\.load", func):
            flag = _keyword(node, "allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append(f"{where}:{node.lineno} {func} with allow_pickle={ast.unparse(flag)}")
        if re.fullmatch(r"(joblib\.load|pd\.read_pickle|pandas\.read_pickle)", func):
            found.append(f"{where}:{node.lineno} {func}")
    return found


def test_the_scan_finds_each_kind_of_unpickling():
    bad = (
        "import pickle\n"
        "import torch, numpy as np\n"
        "torch.load('a.pt')\n"
        "torch.load('a.pt', weights_only=False)\n"
        "np.load('a.npz', allow_pickle=True)\n"
        "from dill import loads\n"
    )
    assert len(unpickling_calls(bad, "x.py")) == 5
    good = (
        "import torch, numpy as np\n"
        "torch.load('a.pt', weights_only=True)\n"
        "np.load('a.npz', allow_pickle=False)\n"
        "np.load('a.npy')\n"
    )
    assert unpickling_calls(good, "y.py") == []


def test_no_source_file_unpickles():
    found = []
    for base in SCANNED:
        for path in sorted(base.rglob("*.py")):
            found += unpickling_calls(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []
