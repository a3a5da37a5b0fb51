"""The option generator: one command-line option per config field, and back to the config."""

import argparse
import json
import re
from dataclasses import dataclass, field

import pytest

from fewops.cli.options import add_config_options, config_from_options, refuse_unknown
from fewops.nn.api import LayerSelection


@dataclass(frozen=True)
class Inner:
    """A nested part (flattened into the same options)."""

    bits: int = 8
    """weight width in bits"""
    scale: float | None = None
    """a scale (none: chosen per layer)"""


@dataclass(frozen=True)
class Small:
    """A config with one field of every kind the generator handles."""

    inner: Inner = field(default_factory=Inner)
    """the nested part"""
    rounds: int = 3
    """search rounds"""
    rate: float = 0.5
    """a rate"""
    name: str | None = "auto"
    """a name, or none"""
    mode: str = field(default="fast", metadata={"choices": ("fast", "exact")})
    """how to search"""
    verbose: bool = False
    """print more"""
    shape: tuple[int, ...] = (2, 3)
    """a shape, as JSON"""
    pairs: tuple | None = None
    """pairs of numbers, as JSON (none: off)"""
    layers: LayerSelection = field(default_factory=LayerSelection)
    """layers to skip, and per-layer changes of the code"""

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"Small.rounds must be at least 1; got {self.rounds!r}.")


def parser_for(config=None):
    parser = argparse.ArgumentParser(prog="tool", allow_abbrev=False)
    add_config_options(parser, config or Small())
    return parser


def parse(*argv, base=None):
    base = base or Small()
    return config_from_options(base, parser_for(base).parse_args(list(argv)))


def test_no_options_give_back_the_base_config_itself():
    base = Small(rounds=7, inner=Inner(bits=4))
    assert parse(base=base) is base


def test_types_none_bools_choices_and_json_tuples():
    config = parse(
        "--bits", "5", "--scale", "0.25", "--rounds", "9", "--rate", "1e-2", "--name", "none",
        "--mode", "exact", "--verbose", "--shape", "[4, 1, 2]", "--pairs", "[[3, 1], [2, null]]",
    )  # fmt: skip
    assert config == Small(
        inner=Inner(bits=5, scale=0.25),
        rounds=9,
        rate=0.01,
        name=None,
        mode="exact",
        verbose=True,
        shape=(4, 1, 2),
        pairs=((3, 1), (2, None)),
    )
    assert parse("--scale", "None").inner.scale is None  # "none" in any case
    assert parse("--no-verbose", base=Small(verbose=True)).verbose is False
    assert parse("--name", "other").name == "other"


def test_bad_values_are_refused_naming_the_option(capsys):
    with pytest.raises(SystemExit):
        parse("--rounds", "three")
    assert "tool: error: argument --rounds: --rounds takes an int; got 'three'." in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        parse("--scale", "big")
    assert "argument --scale: --scale takes a float or none; got 'big'." in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--mode", "slow")
    assert "argument --mode: invalid choice: 'slow' (choose from" in capsys.readouterr().err
    message = "Small.rounds must be at least 1; got 0."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse("--rounds", "0")  # the dataclass's own check runs on the new value


def test_layer_options_inline_and_from_a_file(tmp_path):
    config = parse("--skip-layers", "0", "fc.*", "--layer-overrides", '{"3": {"bits": 4}}')
    assert config.layers == LayerSelection(skip=("0", "fc.*"), overrides={"3": {"bits": 4}})
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps({"conv.*": {"bits": 6, "shape": [1, 2]}}))
    from_file = parse("--layer-overrides", str(path))
    assert from_file.layers == LayerSelection(overrides={"conv.*": {"bits": 6, "shape": (1, 2)}})
    base = Small(layers=LayerSelection(skip=("9",), overrides={"1": {"bits": 3}}))
    kept = parse("--skip-layers", "2", base=base)  # the other half stays the base's
    assert kept.layers == LayerSelection(skip=("2",), overrides={"1": {"bits": 3}})


def test_bad_layer_overrides_are_refused(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    for text, message in [
        (str(missing), f"--layer-overrides takes JSON or a .json file; no file at {str(missing)!r}."),
        ('{"3": 4}', '--layer-overrides must map layer names to field dicts, e.g. {"0": {"bits": 12}}.'),
        ("{oops", "--layer-overrides is not valid JSON ("),
    ]:  # fmt: skip
        with pytest.raises(SystemExit):
            parse("--layer-overrides", text)
        assert message in capsys.readouterr().err


def test_help_comes_from_the_docstrings_and_shows_the_defaults():
    text = " ".join(parser_for(Small(rounds=7)).format_help().split())
    for expected in [
        "--bits BITS weight width in bits (default 8)",
        "--scale SCALE a scale (none: chosen per layer) (default none)",
        "--rounds ROUNDS search rounds (default 7)",
        "--rate RATE a rate (default 0.5)",
        "--name NAME a name, or none (default auto)",
        "--mode {fast,exact} how to search (default fast)",
        "--verbose, --no-verbose print more (default off)",
        "--shape SHAPE a shape, as JSON (default [2, 3])",
        "--pairs PAIRS pairs of numbers, as JSON (none: off) (default none)",
        "--skip-layers NAME [NAME ...] layers left in float",
        "--layer-overrides JSON per-layer changes of the code",
    ]:
        assert expected in text, expected


def test_an_unknown_option_names_the_nearest_valid_one(capsys):
    parser = parser_for()
    _, extra = parser.parse_known_args(["--round", "3"])
    with pytest.raises(SystemExit):
        refuse_unknown(parser, extra)
    assert "tool: error: unrecognized option '--round'; did you mean --rounds?" in (
        capsys.readouterr().err
    )
    _, extra = parser.parse_known_args(["--zzzzzz=1"])
    with pytest.raises(SystemExit):
        refuse_unknown(parser, extra)
    assert "tool: error: unrecognized option '--zzzzzz'; see tool --help." in (
        capsys.readouterr().err
    )
    _, extra = parser.parse_known_args(["--rounds", "3", "4"])
    with pytest.raises(SystemExit):
        refuse_unknown(parser, extra)
    assert "tool: error: unexpected argument '4'; see tool --help." in capsys.readouterr().err
    refuse_unknown(parser, [])  # nothing extra: nothing to refuse


def test_prefixed_options_round_trip():
    parser = argparse.ArgumentParser(prog="tool", allow_abbrev=False)
    add_config_options(parser, Small(), prefix="x-")
    args = parser.parse_args(["--x-rounds", "4", "--x-bits", "2", "--x-skip-layers", "1"])
    config = config_from_options(Small(), args, prefix="x-")
    assert (config.rounds, config.inner.bits, config.layers.skip) == (4, 2, ("1",))
    assert re.search(r"--x-verbose, --no-x-verbose", parser.format_help())


@dataclass(frozen=True)
class Percent:
    share: float = 0.5
    """share of the samples, in % / 100"""
    label: str = "50%"
    """a label with a percent sign"""


def test_help_text_may_hold_a_percent_sign():
    text = " ".join(parser_for(Percent()).format_help().split())
    assert "--share SHARE share of the samples, in % / 100 (default 0.5)" in text
    assert "--label LABEL a label with a percent sign (default 50%)" in text
