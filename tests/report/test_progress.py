"""Long report stages show progress bars when asked, and stay quiet otherwise."""

import torch

from fewops.data import load
from fewops.models import build
from fewops.report.jobs import csd_bits_for_accuracy


def test_the_csd_width_search_shows_a_progress_bar_only_when_asked(capsys):
    data = load("digits", seed=0)
    torch.manual_seed(0)
    model = build("mlp", data.input_shape, data.num_classes, hidden=(8,))
    quiet = csd_bits_for_accuracy(model, data, max_bits=4)
    assert "csd: width search" not in capsys.readouterr().err
    loud = csd_bits_for_accuracy(model, data, max_bits=4, progress=True)
    assert "csd: width search" in capsys.readouterr().err
    assert quiet == loud and 2 <= quiet <= 4
