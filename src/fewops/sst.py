"""Structured sparse ternary (n, k) coding: the public entry point ``fewops.sst.SSTCode``.

The code itself lives in :mod:`fewops.codes.sst`; training and the ``compress_`` handler in
:mod:`fewops.nn.sst`.
"""

from fewops.codes.sst import MAX_N, SSTCode, encode_matrix, num_codewords, to_graph

__all__ = ["MAX_N", "SSTCode", "encode_matrix", "num_codewords", "to_graph"]


def __getattr__(name: str):
    # SSTConfig and the training helpers need torch; import them only when asked for.
    if name in ("SSTConfig", "retrain"):
        from fewops.nn import sst as _nn_sst

        return getattr(_nn_sst, name)
    raise AttributeError(f"module 'fewops.sst' has no attribute {name!r}")
