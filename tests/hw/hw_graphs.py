"""Test graphs: layers of every code (16 inputs, 12 outputs), a graph with every node kind."""

import numpy as np

from fewops.graph.builder import GraphBuilder

SHAPE = (12, 16)


def weight(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=SHAPE)


def coded_graph(code: str):
    """The shift-add graph of a 12 x 16 Gaussian matrix coded by ``code``."""
    w = weight()
    if code == "csd":
        from fewops.codes import csd

        return csd.encode(w, 8).graph
    if code == "dense":
        from fewops.codes import dense

        return dense.encode(w, 8).graph
    if code == "lcc":
        from fewops.codes.lcc import decompose

        return decompose(w, 30.0, algorithm="dmp", workers=1).graph
    if code == "sst":
        from fewops.codes import sst

        return sst.encode_matrix(w, 8, 2).graph
    if code == "wacr":
        from fewops.codes import poly

        return poly.encode(w, axis="fan_in", interval=4, degree=1).graph
    raise ValueError(code)


CODES = ("csd", "dense", "lcc", "sst", "wacr")


def every_kind_graph():
    """Inputs, a constant, shifts left and right, add, sub, neg, mul (general, +-2^e, 0), outputs."""
    b = GraphBuilder()
    x = b.inputs(4)
    c = b.const([-37])[0]
    s = b.shift(x[0], -2)  # x0 / 4
    a = b.add(s, x[1], 0, 3)[0]  # x0/4 + 8 x1
    d = b.sub(x[2], a, -1, 1)[0]  # x2/2 - 2a
    n = b.neg(d, 2)[0]
    m1 = b.mul(x[3], -13, 1)[0]
    m2 = b.mul(x[1], -8)[0]
    m3 = b.mul(x[2], 0)[0]
    e = b.add(m1, c)[0]
    f = b.sub(m2, n, 0, -3)[0]
    g = b.add(e, m3, 2, 0)[0]
    b.outputs([f, g, n, x[0], c], [0, -1, 1, 0, 0])
    return b.build()


def train_full_batch(model, data, steps: int, lr: float = 1e-2) -> None:
    """A few full-batch Adam steps on ``data``'s training split: enough for a tiny test MLP."""
    import torch
    from torch import nn

    opt = torch.optim.Adam(model.parameters(), lr)
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only contend
    try:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
