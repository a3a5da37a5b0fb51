"""Public LCC entry point: ``fewops.lcc.decompose`` (see :mod:`fewops.codes.lcc`)."""

from fewops.codes.lcc import (
    ALGORITHMS,
    LCCResult,
    SliceResult,
    auto_slice_width,
    decompose,
    row_adds,
    slice_bounds,
)

__all__ = [
    "ALGORITHMS",
    "LCCResult",
    "SliceResult",
    "auto_slice_width",
    "decompose",
    "row_adds",
    "slice_bounds",
]
