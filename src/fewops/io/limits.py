"""Limits on what a coded-model folder may declare, checked before any memory is taken.

A saved model is data from wherever the user got it: every number in ``model.json`` that sizes
an allocation or an exponent is checked against :class:`ModelLimits` first, so a hostile file is
refused with the file, the field and the value named instead of exhausting the machine. The
defaults are far above anything fewops writes; raise one with ``limits=ModelLimits(...)`` or
``fewops export --limit NAME=VALUE`` (see docs/reliability.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from fewops.graph.io import GraphLimits


@dataclass(frozen=True)
class ModelLimits:
    """Bounds on a coded-model folder (``model.json`` + ``tensors.safetensors``)."""

    max_json_bytes: int = 64 << 20
    """Largest model.json (64 MiB)."""
    max_tensor_bytes: int = 4 << 30
    """Largest tensors.safetensors (4 GiB)."""
    max_layers: int = 10_000
    """Most coded layers."""
    max_tree_nodes: int = 100_000
    """Most modules in the saved module tree."""
    max_tree_depth: int = 64
    """Deepest nesting of the saved module tree."""
    max_input_elements: int = 1 << 24
    """Most values in one input (the product of input_shape)."""
    max_exponent: int = 512
    """Largest magnitude of a binary exponent (a layer's scale_e; the saved network's own
    exponents are bounded by fewops.network.store.NetworkLimits)."""
    max_scale_bits: int = 64
    """Widest layer scale multiplier scale_m, in bits."""
    max_act_bits: int = 32
    """Widest activation of the integer network."""
    max_conv: int = 1 << 16
    """Largest convolution size entry (kernel, stride, padding, dilation, channels)."""
    graph: GraphLimits = field(default_factory=GraphLimits)
    """Limits on each layer's graph (max_nodes, max_shift, max_bits)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "graph" and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"The limit {f.name} must be a positive integer; got {value!r}.")


LIMIT_NAMES = tuple(f.name for f in dataclasses.fields(ModelLimits) if f.name != "graph") + tuple(
    f.name for f in dataclasses.fields(GraphLimits)
)


def limits_from(settings: list[str] | None) -> ModelLimits:
    """:class:`ModelLimits` with ``NAME=VALUE`` settings (``--limit``) applied; graph limits
    (max_nodes, max_shift, max_bits) go to its ``graph``."""
    top: dict[str, int] = {}
    graph: dict[str, int] = {}
    graph_names = {f.name for f in dataclasses.fields(GraphLimits)}
    for text in settings or []:
        name, sep, value = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in LIMIT_NAMES:
            raise ValueError(
                f"--limit takes NAME=VALUE with NAME one of {', '.join(LIMIT_NAMES)}; got {text!r}."
            )
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"--limit {name} needs an integer value; got {value!r}.") from None
        (graph if name in graph_names else top)[name] = number
    return ModelLimits(**top, graph=GraphLimits(**graph))


def file_size_ok(path: Path, limit: int, name: str, what: str) -> None:
    """Refuse ``path`` when it is larger than ``limit`` bytes (the limit's ``name`` is named)."""
    size = path.stat().st_size
    if size > limit:
        raise ValueError(
            f"The {what} {path} is {size} bytes, beyond the limit {name}={limit}; raise the "
            "limit to read it."
        )


def bounded_int(value, where: str, key: str, lo: int, hi: int, limit: str = "") -> int:
    """``value`` as an int in [lo, hi], or a ValueError naming ``where`` (a file), the field
    ``key`` and the value (and the ``limit`` to raise, when a limit sets the bound)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"The field {key!r} in {where} must be an integer; got {value!r}.")
    if not lo <= value <= hi:
        extra = f" (the limit {limit}; raise it to read this file)" if limit else ""
        raise ValueError(f"The field {key!r} in {where} is {value}, outside [{lo}, {hi}]{extra}.")
    return value


def tree_size_ok(tree, where: str, limits: ModelLimits) -> None:
    """Walk the saved module tree without recursion; refuse it when deeper or larger than the
    limits allow (so that rebuilding it cannot exhaust the stack or the memory)."""
    stack = [(tree, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > limits.max_tree_depth:
            raise ValueError(
                f"The module tree in {where} is nested deeper than the limit max_tree_depth="
                f"{limits.max_tree_depth}."
            )
        if count > limits.max_tree_nodes:
            raise ValueError(
                f"The module tree in {where} has more modules than the limit max_tree_nodes="
                f"{limits.max_tree_nodes}."
            )
        if not isinstance(node, dict):
            raise ValueError(f"The module tree in {where} has a module that is not an object.")
        if node.get("kind") == "sequential":
            children = node.get("children")
            if not isinstance(children, list):
                raise ValueError(f"A sequential module in {where} has no list of children.")
            for child in children:
                if not (isinstance(child, list) and len(child) == 2 and isinstance(child[0], str)):
                    raise ValueError(
                        f"A sequential module in {where} has a child that is not [name, module]."
                    )
                stack.append((child[1], depth + 1))


def check_structure(structure: dict, path: Path, limits: ModelLimits) -> dict:
    """The layer records of a parsed model.json, after every size and exponent in it is checked
    against ``limits`` (a ValueError names ``path``, the field and the value)."""
    where = str(path)
    records = structure.get("layers")
    if not isinstance(records, dict):
        raise ValueError(f"The model structure file {path} has no valid 'layers' entry.")
    if len(records) > limits.max_layers:
        raise ValueError(
            f"The model structure file {path} has {len(records)} layers, beyond the limit "
            f"max_layers={limits.max_layers}."
        )
    top = 1 << 62
    e = limits.max_exponent
    for name, record in records.items():
        at = f"{where} (layer {name!r})"
        if not isinstance(record, dict):
            raise ValueError(f"The record of layer {name!r} in {where} is not an object.")
        bounded_int(record.get("scale_e"), at, "scale_e", -e, e, f"max_exponent={e}")
        m_bits = limits.max_scale_bits
        bounded_int(
            record.get("scale_m"),
            at,
            "scale_m",
            -(1 << m_bits),
            1 << m_bits,
            f"max_scale_bits={m_bits}",
        )
        for key in ("weight_bits", "params", "table_reads"):
            bounded_int(record.get(key), at, key, 0, top)
        shape = record.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2):
            raise ValueError(f"The field 'shape' in {at} must be [out, in]; got {shape!r}.")
        for v in shape:
            bounded_int(
                v, at, "shape", 1, limits.graph.max_nodes, f"max_nodes={limits.graph.max_nodes}"
            )
        if record.get("kind") == "conv":
            conv = record.get("conv")
            if not isinstance(conv, dict):
                raise ValueError(f"The field 'conv' in {at} must be an object; got {conv!r}.")
            bounded_int(
                conv.get("in_channels"),
                at,
                "in_channels",
                1,
                limits.max_conv,
                f"max_conv={limits.max_conv}",
            )
            for key, low in (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
                pair = conv.get(key)
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise ValueError(f"The field {key!r} in {at} must be a pair; got {pair!r}.")
                for v in pair:
                    bounded_int(v, at, key, low, limits.max_conv, f"max_conv={limits.max_conv}")
        big = record.get("big_const")
        if big is not None and not (
            isinstance(big, list) and all(isinstance(v, str) and len(v) <= 4000 for v in big)
        ):
            raise ValueError(f"The field 'big_const' in {at} must be a list of decimal strings.")
    shape = structure.get("input_shape")
    if shape is not None:
        if not (isinstance(shape, list) and 1 <= len(shape) <= 8):
            raise ValueError(f"The field 'input_shape' in {where} must be a list; got {shape!r}.")
        total = 1
        for v in shape:
            total *= bounded_int(v, where, "input_shape", 1, limits.max_input_elements)
        if total > limits.max_input_elements:
            raise ValueError(
                f"The field 'input_shape' in {where} is {shape} ({total} values per input), "
                f"beyond the limit max_input_elements={limits.max_input_elements}."
            )
    digest = structure.get("network_sha256")
    if digest is not None and (not isinstance(digest, str) or len(digest) != 64):
        raise ValueError(f"The field 'network_sha256' in {where} must be a sha256 hex digest.")
    if structure.get("sequence") is not None:
        tree_size_ok(structure["sequence"], where, limits)
    return records
