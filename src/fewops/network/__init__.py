"""The torch-free integer network: typed steps, the simulator, calibration, and saving."""

from fewops.network.network import Network, ValueInfo, infer_values
from fewops.network.simulate import calibrate, forward
from fewops.network.steps import (
    Add,
    Coded,
    ConvGeometry,
    Flatten,
    Input,
    MaxPool,
    Pad,
    Requantize,
    Reshape,
    Slice,
    SumPool,
    act_range,
    requantize,
)

__all__ = [
    "Add",
    "Coded",
    "ConvGeometry",
    "Flatten",
    "Input",
    "MaxPool",
    "Network",
    "Pad",
    "Requantize",
    "Reshape",
    "Slice",
    "SumPool",
    "ValueInfo",
    "act_range",
    "calibrate",
    "forward",
    "infer_values",
    "requantize",
]
