"""The io tests build their sample files with the fuzzing suite's helpers (tests/fuzz)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
