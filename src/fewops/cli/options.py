"""Command-line options generated from config dataclasses, so the CLI and the API cannot drift.

Every field of a config (and of the dataclasses nested in it, such as its code and its
:class:`~fewops.train.recipe.Recipe`) becomes one option: ``n`` -> ``--n``, ``batch_size`` ->
``--batch-size``. The help text is the field's docstring (the string literal written under it)
and the default is the config's own. Options are added with ``default=SUPPRESS``, so a config
built from the command line differs from its base (the method's default or a preset) only in the
options the user typed.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import json
import textwrap
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

# Fields that are API-only (objects a command line cannot spell).
NOT_ON_THE_COMMAND_LINE = ("validation",)
NONE_WORDS = ("none", "null", "off", "full")


@cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: its docstring} for a dataclass and its bases (attribute docstrings)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # defined interactively: no source, no help text
            continue
        body = ast.parse(source).body[0]
        assert isinstance(body, ast.ClassDef)
        statements = body.body
        for stmt, after in zip(statements, statements[1:] + [None], strict=True):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


def _flag(name: str, prefix: str) -> str:
    return "--" + prefix + name.replace("_", "-")


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    """(inner type, whether None is allowed) of ``X | None``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Any), True
    return hint, False


def _parser_for(hint: Any, optional: bool, flag: str):
    """The argparse ``type`` callable for a field's annotation."""
    base = hint if isinstance(hint, type) else typing.get_origin(hint) or hint

    def parse(text: str):
        if optional and text.lower() in NONE_WORDS:
            return None
        try:
            if base is int:
                return int(text)
            if base is float:
                return float(text)
            if base is str:
                return text
            value = json.loads(text)  # tuples, dicts: written as JSON, e.g. [[3, 1], null]
        except (ValueError, json.JSONDecodeError):
            kind = getattr(base, "__name__", str(base))
            raise argparse.ArgumentTypeError(
                f"{flag} takes {'an' if kind[0] in 'aeiou' else 'a'} {kind}"
                f"{' or none' if optional else ''}; got {text!r}."
            ) from None
        return _tuples(value) if base is tuple else value

    return parse


def _tuples(value):
    """JSON lists -> tuples, recursively (config fields are hashable tuples)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _default_text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return json.dumps(value)
    return str(value)


def add_config_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config: Any,
    *,
    prefix: str = "",
    skip: tuple[str, ...] = (),
) -> None:
    """Add one option per field of the dataclass instance ``config`` (nested dataclasses are
    flattened: their fields get options of their own). Defaults shown are ``config``'s."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in NOT_ON_THE_COMMAND_LINE or f.name in skip or not f.init:
            continue
        value = getattr(config, f.name)
        if f.name == "layers":
            _add_layer_options(parser, prefix)
            continue
        if dataclasses.is_dataclass(value):
            add_config_options(parser, value, prefix=prefix, skip=skip)
            continue
        flag = _flag(f.name, prefix)
        hint, optional = _strip_optional(hints[f.name])
        # argparse %-formats help strings: a literal % (e.g. "in %") must be doubled.
        help_text = docs.get(f.name, f.name.replace("_", " ")).replace("%", "%%")
        choices = f.metadata.get("choices")
        if hint is bool:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=f"{help_text} (default {'on' if value else 'off'})",
            )
            continue
        parser.add_argument(
            flag,
            type=_parser_for(hint, optional, flag),
            choices=choices,
            default=argparse.SUPPRESS,
            metavar=None if choices else f.name.upper(),
            help=f"{help_text} (default {_default_text(value).replace('%', '%%')})",
        )


def _add_layer_options(parser, prefix: str) -> None:
    parser.add_argument(
        _flag("skip_layers", prefix),
        nargs="+",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="layers left in float, by name or full-match regex (default none)",
    )
    parser.add_argument(
        _flag("layer_overrides", prefix),
        type=_overrides,
        metavar="JSON",
        default=argparse.SUPPRESS,
        help="per-layer changes of the code, as JSON or a .json file: "
        '{"layer name or regex": {"field": value}} (default: the preset\'s)',
    )


def _overrides(text: str) -> dict:
    """--layer-overrides: inline JSON, or the path of a .json file holding it."""
    source = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise argparse.ArgumentTypeError(
                f"--layer-overrides takes JSON or a .json file; no file at {text!r}."
            )
        source = path.read_text()
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--layer-overrides is not valid JSON ({exc}).") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError(
            '--layer-overrides must map layer names to field dicts, e.g. {"0": {"bits": 12}}.'
        )
    return {name: {k: _tuples(v) for k, v in fields.items()} for name, fields in value.items()}


def config_from_options(base: Any, options: argparse.Namespace, *, prefix: str = "") -> Any:
    """``base`` with every field the user gave on the command line replaced (nested dataclasses
    too); the dataclasses' own checks then run on the new values."""
    given = vars(options)
    changes = {}
    for f in dataclasses.fields(base):
        value = getattr(base, f.name)
        if f.name == "layers":
            skip_layers = given.get((prefix + "skip_layers").replace("-", "_"))
            overrides = given.get((prefix + "layer_overrides").replace("-", "_"))
            if skip_layers is not None or overrides is not None:
                changes[f.name] = dataclasses.replace(
                    value,
                    skip=tuple(skip_layers) if skip_layers is not None else value.skip,
                    overrides=overrides if overrides is not None else value.overrides,
                )
            continue
        if dataclasses.is_dataclass(value):
            nested = config_from_options(value, options, prefix=prefix)
            if nested is not value:
                changes[f.name] = nested
            continue
        dest = (prefix + f.name).replace("-", "_")
        if dest in given:
            changes[f.name] = given[dest]
    return dataclasses.replace(base, **changes) if changes else base


def refuse_unknown(parser: argparse.ArgumentParser, extra: list[str]) -> None:
    """Exit with an error naming the first unknown option and the nearest valid one."""
    if not extra:
        return
    known = [s for action in parser._actions for s in action.option_strings]
    word = extra[0].split("=", 1)[0]
    if not word.startswith("-"):  # a stray value, e.g. two numbers after an option taking one
        parser.error(f"unexpected argument {word!r}; see {parser.prog} --help.")
    near = difflib.get_close_matches(word, known, n=1)
    hint = f"; did you mean {near[0]}?" if near else f"; see {parser.prog} --help."
    parser.error(f"unrecognized option {word!r}{hint}")
