"""Fixtures of the hardware tests (graphs are built once per session)."""

import pytest
from hw_graphs import coded_graph, every_kind_graph


@pytest.fixture(scope="session")
def graphs():
    cache = {}

    def get(code):
        if code not in cache:
            cache[code] = every_kind_graph() if code == "every" else coded_graph(code)
        return cache[code]

    return get
