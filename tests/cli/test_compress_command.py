"""``fewops compress``: options generated per method, help, refusals before any work starts."""

import dataclasses

import pytest

from fewops.cli import compress
from fewops.cli.main import main
from fewops.cli.options import NOT_ON_THE_COMMAND_LINE, config_from_options
from fewops.methods.registry import METHODS
from fewops.methods.sst import SSTCodeSpec, SSTConfig


def flat(text: str) -> str:
    return " ".join(text.split())


def test_help_lists_every_method_with_its_options_and_presets(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", "--help"])
    assert exit_info.value.code == 0
    text = flat(capsys.readouterr().out)
    assert "method options (see fewops compress --method M --help):" in text
    for entry in METHODS.values():
        assert f"{entry.name} ({entry.summary}):" in text
        assert f"presets: {', '.join(entry.presets)}" in text
    assert "sst (structured sparse ternary (n, k)): --n --k --per-row-step --epochs --lr" in text
    assert "--prune-lambda" in text  # lcc's
    assert "--float-epochs" in text and "--float-seed" in text


def test_method_help_lists_its_options_with_their_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", "--method", "sst", "--help"])
    assert exit_info.value.code == 0
    text = flat(capsys.readouterr().out)
    assert "sst options (defaults: preset 'default'):" in text
    for expected in [
        "--n N group size: weights are coded in groups of n along each row (1..16) (default 8)",
        "--k K nonzeros per group",
        "(default 2)",
        "--per-row-step, --no-per-row-step fit one step per output row",
        "--epochs EPOCHS training epochs (0: no training) (default 6)",
        "--lr LR learning rate (default 0.001)",
        "--batch-size BATCH_SIZE mini-batch size (per process under torchrun) (default 128)",
        "--gradual, --no-gradual tighten k gradually",
        "--k-start K_START k at the start of the gradual schedule (none: min(n, 2k)) "
        "(default none)",
        "--normalize, --no-normalize even out row spreads",
        "--skip-layers NAME [NAME ...]",
        "--layer-overrides JSON",
    ]:
        assert expected in text, expected
    assert "--prune-lambda" not in text  # only the chosen method's options


def test_method_help_shows_the_chosen_preset_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["compress", "--method", "sst", "--preset", "demo", "--help"])
    text = flat(capsys.readouterr().out)
    assert "sst options (defaults: preset 'demo'):" in text
    assert "--epochs EPOCHS training epochs (0: no training) (default 20)" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--method", "lcc", "--prun-lambda", "0.1"],
            "fewops compress --method lcc: error: unrecognized option '--prun-lambda'; "
            "did you mean --prune-lambda?",
        ),
        (
            ["--method", "sst", "--nn", "4"],
            "fewops compress --method sst: error: unrecognized option '--nn'; did you mean --n?",
        ),
        (
            ["--method", "sst", "--n=4", "--kk=1"],
            "fewops compress --method sst: error: unrecognized option '--kk'; did you mean --k?",
        ),
    ],
)
def test_a_misspelt_option_is_refused_naming_the_nearest(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", *argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == message
    assert not (tmp_path / "out").exists()


def test_another_methods_option_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["compress", "--method", "csd", "--n", "4", "--out", str(tmp_path / "out")])
    assert "fewops compress --method csd: error: unrecognized option '--n'" in (
        capsys.readouterr().err
    )


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if compress gets as far as loading data and training."""
    calls = []

    def run_compress(*args, **kwargs):
        calls.append((args, kwargs))
        raise AssertionError("compress started work it should have refused")

    monkeypatch.setattr(compress, "run_compress", run_compress)
    return calls


def test_out_naming_a_file_is_refused_before_any_work(tmp_path, capsys, no_work):
    existing = tmp_path / "report.json"
    existing.write_text("{}")
    data_root = tmp_path / "data"
    argv = ["compress", "--method", "sst", "--out", str(existing), "--data-root", str(data_root)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    message = (
        f"fewops compress --method sst: error: --out {str(existing)!r} is a file; give a folder "
        "(it is created if missing)."
    )
    assert capsys.readouterr().err.strip().splitlines()[-1] == message
    assert no_work == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no folder created
    assert existing.read_text() == "{}"


def test_missing_out_and_method_are_refused(capsys, no_work):
    with pytest.raises(SystemExit):
        main(["compress", "--method", "csd"])
    assert "error: the following arguments are required: --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compress", "--out", "x"])
    assert "error: the following arguments are required: --method" in capsys.readouterr().err
    assert no_work == []


def test_an_unknown_preset_is_one_clear_error(tmp_path, capsys, no_work):
    code = main(["compress", "--method", "sst", "--preset", "fast", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert err == "fewops: error: Method 'sst' has no preset 'fast'; its presets: default, demo.\n"
    assert no_work == [] and not (tmp_path / "o").exists()


def test_bad_values_and_override_keys_are_refused_before_any_work(tmp_path, capsys, no_work):
    out = str(tmp_path / "o")
    assert main(["compress", "--method", "sst", "--k", "9", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err == "fewops: error: k=9 nonzeros per group cannot exceed the group size n=8.\n"
    overrides = '{"0": {"epochs": 3}}'
    argv = ["compress", "--method", "sst", "--layer-overrides", overrides, "--out", out]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "fewops: error: Override for layer '0' sets 'epochs', which is not a field of "
        "SSTCodeSpec (per-layer overrides may set only: k, n, per_row_step).\n"
    )
    assert no_work == [] and not (tmp_path / "o").exists()


def test_options_reach_the_job(tmp_path, monkeypatch):
    seen = {}

    def run_compress(method, config, out, **kwargs):
        seen.update(method=method, config=config, out=out, **kwargs)
        return {}

    monkeypatch.setattr(compress, "run_compress", run_compress)
    monkeypatch.setattr(compress, "summary", lambda report: "")
    argv = ["compress", "--method", "sst", "--n", "4", "--k", "1", "--epochs", "2"]
    argv += ["--float-epochs", "3", "--float-seed", "5", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    assert seen["method"] == "sst"
    assert seen["config"].code == SSTCodeSpec(n=4, k=1)
    assert seen["config"].train.epochs == 2
    assert seen["config"].train.lr == SSTConfig().train.lr
    assert (seen["float_epochs"], seen["seed"], seen["progress"]) == (3, 5, False)


@pytest.mark.parametrize(
    ("name", "preset"),
    [(name, preset) for name, entry in METHODS.items() for preset in entry.presets],
)
def test_no_options_give_back_exactly_the_preset(name, preset):
    parser = compress.build_parser(name, preset)
    args = parser.parse_args(["--method", name, "--preset", preset])
    base = METHODS[name].config(preset)
    config = config_from_options(base, args)
    assert config == base
    assert type(config) is METHODS[name].config_type


def field_flags(config) -> set[str]:
    """``--name`` of every field of ``config`` and of the dataclasses nested in it."""
    flags = set()
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in NOT_ON_THE_COMMAND_LINE or not f.init:
            continue
        if f.name == "layers":
            flags |= {"--skip-layers", "--layer-overrides"}
        elif dataclasses.is_dataclass(value):
            flags |= field_flags(value)
        else:
            flags.add("--" + f.name.replace("_", "-"))
    return flags


@pytest.mark.parametrize("name", list(METHODS))
def test_every_config_field_has_its_option(name):
    parser = compress.build_parser(name)
    options = {s for action in parser._actions for s in action.option_strings}
    missing = field_flags(METHODS[name].config()) - options
    assert not missing, f"{name}: fields without an option: {sorted(missing)}"
