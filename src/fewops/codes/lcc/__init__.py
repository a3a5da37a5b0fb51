"""Linear computation coding (LCC): a matrix as a product of sparse power-of-two wiring matrices.

See docs/lcc.md. Entry point: :func:`decompose`.
"""

from fewops.codes.lcc.algorithms import ALGORITHMS
from fewops.codes.lcc.api import LCCResult, SliceResult, auto_slice_width, decompose, slice_bounds
from fewops.codes.lcc.core import SliceCode, row_adds, split_pow2

__all__ = [
    "ALGORITHMS",
    "LCCResult",
    "SliceCode",
    "SliceResult",
    "auto_slice_width",
    "decompose",
    "row_adds",
    "slice_bounds",
    "split_pow2",
]
