"""fit/evaluate: determinism, exact resume, checkpoints, hooks, and the trained-model cache."""

import re

import numpy as np
import pytest
import torch
from torch import nn

from fewops.data import load
from fewops.models import build
from fewops.train import cache, distill
from fewops.train import fit as train
from fewops.train.cache import CacheEntryRebuilt, train_or_load
from fewops.train.fit import evaluate, fit
from fewops.train.recipe import Recipe


@pytest.fixture(autouse=True)
def _one_thread():
    # These models are tiny: extra intra-op threads only spin, badly so on a busy machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits():
    return load("digits")


@pytest.fixture(scope="module")
def small(digits):
    """A 400/100 slice of digits: enough to check mechanics, cheap on a busy 2-core machine."""
    return _Small(
        digits.x_train[:400], digits.y_train[:400], digits.x_test[:100], digits.y_test[:100]
    )


def _model(seed=0, name="mlp", **options):
    torch.manual_seed(seed)
    if name == "mlp":
        options.setdefault("hidden", (32,))
    return build(name, (1, 8, 8), 10, **options)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fit_learns_digits_and_reports_history(digits):
    model = _model()
    history = fit(model, digits, epochs=4, lr=3e-3, batch_size=64, progress=False)
    assert history["epoch"] == [1, 2, 3, 4]
    assert set(history) == {"epoch", "loss", "train_accuracy", "test_accuracy", "lr", "seconds"}
    assert history["loss"][-1] < history["loss"][0]
    assert history["test_accuracy"][-1] > 0.85
    assert history["test_accuracy"][-1] == evaluate(model, digits.x_test, digits.y_test)


def test_two_runs_give_identical_weights(small):
    runs = []
    for _ in range(2):
        model = _model(name="mlp", dropout=0.3)  # dropout draws from the seeded generator
        fit(model, small, epochs=2, batch_size=64, seed=7, progress=False)
        runs.append(_weights(model))
    assert _same(*runs)
    other = _model(name="mlp", dropout=0.3)
    fit(other, small, epochs=2, batch_size=64, seed=8, progress=False)
    assert not _same(runs[0], _weights(other))


class Interrupt(Exception):
    pass


def _interrupt_at(epoch_steps, stop_after):
    count = {"steps": 0}

    def after_step(model):
        count["steps"] += 1
        if count["steps"] > stop_after * epoch_steps:
            raise Interrupt

    return after_step


@pytest.mark.parametrize(
    ("optimizer", "schedule"), [("adam", None), ("sgd", "cosine"), ("adamw", None)]
)
def test_interrupted_then_resumed_run_matches_uninterrupted(small, tmp_path, optimizer, schedule):
    settings = dict(epochs=4, batch_size=128, lr=1e-2, optimizer=optimizer, lr_schedule=schedule,
                    seed=3, progress=False, weight_decay=1e-4)  # fmt: skip
    straight = _model(name="mlp", dropout=0.2)
    expected_history = fit(straight, small, **settings)

    path = tmp_path / "run.safetensors"
    steps_per_epoch = -(-len(small.y_train) // 128)
    first = _model(name="mlp", dropout=0.2)
    with pytest.raises(Interrupt):
        fit(first, small, checkpoint=path, after_step=_interrupt_at(steps_per_epoch, 2), **settings)
    assert path.exists()
    resumed = _model(seed=99, name="mlp", dropout=0.2)  # different start: the checkpoint wins
    history = fit(resumed, small, checkpoint=path, **settings)
    assert _same(_weights(resumed), _weights(straight))
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["loss"] == expected_history["loss"]
    assert history["lr"] == expected_history["lr"]
    assert [p.name for p in tmp_path.iterdir()] == ["run.safetensors"]  # no temporaries left


def _bn_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)
    )


def test_resume_with_batchnorm_model(small, tmp_path):
    """Running statistics (buffers) are checkpointed too."""
    settings = dict(epochs=2, batch_size=64, seed=1, progress=False)
    straight = _bn_model()
    fit(straight, small, **settings)
    path = tmp_path / "bn.safetensors"
    first = _bn_model()
    fit(first, small, checkpoint=path, **{**settings, "epochs": 1})
    resumed = _bn_model()
    fit(resumed, small, checkpoint=path, **settings)
    assert _same(_weights(resumed), _weights(straight))
    assert not torch.equal(resumed[1].running_mean, torch.zeros(4))


class _Small:
    def __init__(self, x_train, y_train, x_test, y_test):
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test


def test_finished_checkpoint_returns_without_training(small, tmp_path):
    path = tmp_path / "done.safetensors"
    model = _model()
    history = fit(model, small, epochs=2, checkpoint=path, progress=False)
    again = _model(seed=5)
    assert fit(again, small, epochs=2, checkpoint=path, progress=False) == history
    assert _same(_weights(again), _weights(model))
    message = (
        f"The checkpoint {path} holds 2 trained epochs, more than the 1 asked for; "
        "pass a larger epochs, resume=False, or another path."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        fit(_model(), small, epochs=1, checkpoint=path, progress=False)
    # resume=False starts over and overwrites.
    fit(_model(), small, epochs=1, checkpoint=path, resume=False, progress=False)


def test_resume_refuses_changed_settings(small, tmp_path):
    path = tmp_path / "ck.safetensors"
    fit(_model(), small, epochs=1, lr=1e-3, checkpoint=path, progress=False)
    message = (
        f"The checkpoint {path} was written with lr=0.001, but this run has lr=0.01; "
        "resuming would mix two different runs. Pass resume=False to start over, "
        "or use another checkpoint path."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$") as info:
        fit(_model(), small, epochs=2, lr=1e-2, checkpoint=path, progress=False)
    assert str(path) in str(info.value)


def test_checkpoint_for_another_model_is_explained(small, tmp_path):
    path = tmp_path / "ck.safetensors"
    fit(_model(hidden=(32,)), small, epochs=1, checkpoint=path, progress=False)
    # The tail is torch's own load_state_dict report, one tab-indented line per mismatch.
    pattern = (
        f"^The weights in {re.escape(str(path))} do not fit this model: "
        r"Error\(s\) in loading state_dict for Sequential:(\n\t[^\n]+)+$"
    )
    with pytest.raises(ValueError, match=pattern):
        fit(_model(hidden=(16,)), small, epochs=2, checkpoint=path, progress=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_checkpoint_names_the_file(small, tmp_path, damage):
    path = tmp_path / "ck.safetensors"
    fit(_model(), small, epochs=1, checkpoint=path, progress=False)
    data = path.read_bytes()
    path.write_bytes(b"\x00garbage" if damage == "garbage" else data[: len(data) // 2])
    # The parenthesis holds the safetensors reader's own reason, which varies with the damage.
    pattern = (
        f"^The checkpoint {re.escape(str(path))} is corrupt or unreadable "
        r"\([^()\n]+\)\. Delete it to start afresh\.$"
    )
    with pytest.raises(ValueError, match=pattern) as info:
        fit(_model(), small, epochs=2, checkpoint=path, progress=False)
    assert str(path) in str(info.value)


def test_regularizer_and_after_step_hooks(digits):
    plain = _model()
    fit(plain, digits, epochs=2, lr=1e-2, progress=False)
    shrunk = _model()
    fit(shrunk, digits, epochs=2, lr=1e-2, progress=False,
        regularizer=lambda m: 0.5 * sum((p**2).sum() for p in m.parameters()))  # fmt: skip
    norm = lambda m: sum(float((p.detach() ** 2).sum()) for p in m.parameters())  # noqa: E731
    assert norm(shrunk) < 0.5 * norm(plain)

    projected = _model()
    fit(projected, digits, epochs=1, progress=False,
        after_step=lambda m: [p.clamp_(-0.05, 0.05) for p in m.parameters()])  # fmt: skip
    assert all(bool((p.detach().abs() <= 0.05).all()) for p in projected.parameters())

    with pytest.raises(
        TypeError, match=re.escape("regularizer(model) must return a scalar tensor, got float.")
    ):
        fit(_model(), digits, epochs=1, progress=False, regularizer=lambda m: 1.0)


def test_augment_sees_every_training_batch(small):
    seen = []

    def augment(x):
        seen.append(x.shape[0])
        return x.flip(-1)

    fit(_model(), small, epochs=1, batch_size=150, augment=augment, progress=False)
    assert seen == [150, 150, 100]


def test_evaluate_matches_a_manual_count(digits):
    model = _model()
    fit(model, digits, epochs=1, progress=False)
    model.train()
    with torch.no_grad():
        predictions = model.eval()(torch.from_numpy(digits.x_test)).argmax(1).numpy()
    model.train()
    accuracy = evaluate(model, digits.x_test, digits.y_test, batch_size=7)
    assert accuracy == np.mean(predictions == digits.y_test)
    assert model.training  # mode restored
    message = (
        "evaluate needs as many labels as samples, and at least one: "
        f"got {len(digits.x_test)} samples and 3 labels."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluate(model, digits.x_test, digits.y_test[:3])


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"epochs": 0}, ValueError, "epochs must be a positive integer, got 0."),
        (
            {"epochs": 1, "optimizer": "rmsprop"},
            ValueError,
            "Unknown optimizer 'rmsprop'; use one of adam, adamw, sgd.",
        ),
        (
            {"epochs": 1, "lr_schedule": "step"},
            ValueError,
            "Unknown lr_schedule 'step'; use None or 'cosine'.",
        ),
        ({"epochs": 1, "lr": -1}, ValueError, "lr must be a positive number, got -1."),
        (
            {"epochs": 1, "batch_size": 2.5},
            ValueError,
            "batch_size must be a positive integer, got 2.5.",
        ),
    ],
)
def test_bad_settings_are_explained(small, options, error, message):
    with pytest.raises(error, match=re.escape(message)):
        fit(_model(), small, progress=False, **options)


def test_num_threads_applies_during_fit_only(small):
    seen = []
    fit(_model(), small, epochs=1, num_threads=2, progress=False,
        after_step=lambda m: seen.append(torch.get_num_threads()))  # fmt: skip
    assert set(seen) == {2}
    assert torch.get_num_threads() == 1


def test_fit_needs_a_dataset_and_a_module(small):
    message = (
        "fit needs a data set with x_train and y_train (e.g. fewops.data.load(...)); "
        "object lacks x_train, y_train."
    )
    with pytest.raises(TypeError, match=re.escape(message)):
        fit(_model(), object(), epochs=1)
    with pytest.raises(TypeError, match=re.escape("fit trains a torch.nn.Module, got str.")):
        fit("model", small, epochs=1)


def test_train_or_load_caches_the_trained_model(tmp_path, monkeypatch, digits):
    kwargs = dict(epochs=2, seed=0, lr=1e-2, cache_dir=tmp_path, hidden=(24,), progress=False)
    model, info = train_or_load("mlp", "digits", **kwargs)
    assert not info["cached"] and info["path"].exists() and not model.training
    assert info["test_accuracy"] > 0.5
    assert [p.name for p in tmp_path.iterdir()] == [info["path"].name]  # partial removed

    def no_training(*args, **kwargs):
        raise AssertionError("fit must not run for a cached model")

    monkeypatch.setattr(cache, "fit", no_training)
    again, info2 = train_or_load("mlp", "digits", dataset=digits, **kwargs)
    assert info2["cached"] and info2["path"] == info["path"]
    assert info2["test_accuracy"] == info["test_accuracy"]
    assert _same(_weights(again), _weights(model))
    # A different key (hidden sizes) means a different file, so training is needed.
    with pytest.raises(AssertionError, match="must not run"):
        train_or_load("mlp", "digits", **{**kwargs, "hidden": (12,)})


def test_train_or_load_rebuilds_a_corrupt_cache_file(tmp_path, digits):
    kwargs = dict(epochs=1, seed=0, cache_dir=tmp_path, hidden=(8,), progress=False)
    _, info = train_or_load("mlp", "digits", dataset=digits, **kwargs)
    info["path"].write_bytes(b"broken")
    # The parenthesis holds the safetensors reader's own reason.
    pattern = (
        f"^Not trusting the cached model {re.escape(str(info['path']))}: it is corrupt or "
        r"unreadable \([^()\n]+\); training it again\.$"
    )
    with pytest.warns(CacheEntryRebuilt, match=pattern):
        _, rebuilt = train_or_load("mlp", "digits", dataset=digits, **kwargs)
    assert rebuilt["cached"] is False and info["path"].stat().st_size > 1000


# ---------------------------------------------------------------- knowledge distillation


def test_distillation_loss_matches_its_formula():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=gen), torch.randn(6, 5, generator=gen)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    T, alpha = 3.0, 0.4
    p_t = torch.softmax(t / T, dim=1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / T, dim=1))).sum(dim=1).mean()
    expected = (1 - alpha) * torch.nn.functional.cross_entropy(s, y) + alpha * T * T * kl
    got = distill.distillation_loss(s, y, t, T, alpha)
    assert torch.allclose(got, expected, atol=1e-6)
    # A student equal to its teacher has zero soft loss: only the hard part is left.
    same = distill.distillation_loss(t, y, t, T, 1.0)
    assert abs(float(same)) < 1e-6


def test_fit_with_teacher_is_deterministic_and_differs_from_plain_training(small):
    teacher = _model(seed=3)
    fit(teacher, small, epochs=2, batch_size=64, progress=False)
    runs = []
    for _ in range(2):
        model = _model()
        fit(model, small, epochs=2, batch_size=64, progress=False, teacher=teacher,
            distill_T=2.0, distill_alpha=0.7)  # fmt: skip
        runs.append(_weights(model))
    assert _same(*runs)
    plain = _model()
    fit(plain, small, epochs=2, batch_size=64, progress=False)
    assert not _same(runs[0], _weights(plain))
    # Precomputed teacher logits give the same run as the teacher model.
    with torch.no_grad():
        logits = teacher(torch.as_tensor(small.x_train, dtype=torch.float32))
    table = _model()
    fit(table, small, epochs=2, batch_size=64, progress=False, teacher=logits,
        distill_T=2.0, distill_alpha=0.7)  # fmt: skip
    assert _same(runs[0], _weights(table))


def test_distillation_uses_the_teacher_loss(small, monkeypatch):
    calls = []
    real = distill.distillation_loss

    def spy(*args):
        calls.append(args[3:])
        return real(*args)

    monkeypatch.setattr(train, "distillation_loss", spy)
    teacher = _model(seed=3)
    fit(_model(), small, epochs=1, batch_size=100, progress=False, teacher=teacher,
        distill_T=5.0, distill_alpha=0.25)  # fmt: skip
    assert calls == [(5.0, 0.25)] * 4
    calls.clear()
    fit(_model(), small, epochs=1, batch_size=100, progress=False)
    assert calls == []


def test_distillation_with_augment_runs_the_teacher_per_batch(small):
    seen = []

    class Teacher(nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return torch.zeros(x.shape[0], 10)

    fit(_model(), small, epochs=1, batch_size=100, progress=False, teacher=Teacher(),
        augment=lambda x: x + 0.0)  # fmt: skip
    assert seen == [100] * 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"teacher": "model"},
            "teacher must be a torch.nn.Module or an array of its training-set logits, got str.",
        ),
        (
            {"teacher": torch.zeros(3, 10)},
            "teacher logits must have shape (number of training samples, classes) = "
            "(400, classes); got (3, 10).",
        ),
        (
            {"teacher": torch.zeros(400, 10), "distill_T": 0},
            "distill_T must be a positive number, got 0.",
        ),
        (
            {"teacher": torch.zeros(400, 10), "distill_alpha": 1.5},
            "distill_alpha must be in (0, 1], got 1.5.",
        ),
    ],
)
def test_bad_distillation_settings_are_explained(small, kwargs, match):
    with pytest.raises((TypeError, ValueError), match=re.escape(match)):
        fit(_model(), small, epochs=1, progress=False, **kwargs)


def test_distillation_settings_are_part_of_the_checkpoint(small, tmp_path):
    ck = tmp_path / "kd.safetensors"
    teacher = torch.zeros(400, 10)
    fit(_model(), small, epochs=1, progress=False, checkpoint=ck, teacher=teacher,
        distill_alpha=0.5)  # fmt: skip
    message = (
        f"The checkpoint {ck} was written with distill_alpha=0.5, but this run has "
        "distill_alpha=0.9; resuming would mix two different runs. Pass resume=False to "
        "start over, or use another checkpoint path."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        fit(_model(), small, epochs=2, progress=False, checkpoint=ck, teacher=teacher,
            distill_alpha=0.9)  # fmt: skip


def test_weight_average_is_the_warmed_up_moving_average_of_the_steps(small):
    snapshots = []

    def record(model):
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})

    model = _model()
    decay = 0.9
    history = fit(model, small, epochs=2, batch_size=64, lr=1e-2, progress=False,
                  after_step=record, ema_decay=decay)  # fmt: skip
    start = _model()  # the same draw fit started from
    expected = {n: p.detach().clone() for n, p in start.named_parameters()}
    for t, snap in enumerate(snapshots, start=1):
        d = min(decay, (1 + t) / (10 + t))
        expected = {n: d * expected[n] + (1 - d) * snap[n] for n in expected}
    final = dict(model.named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(final[name].detach(), value, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(value, snapshots[-1][name])  # the average, not the last step
    # The history scores the averaged model, which is what the model ends with.
    assert history["test_accuracy"][-1] == evaluate(model, small.x_test, small.y_test)


def test_interrupted_run_with_weight_average_resumes_exactly(small, tmp_path):
    settings = dict(epochs=3, batch_size=128, lr=1e-2, seed=5, progress=False, ema_decay=0.95)
    straight = _model()
    expected_history = fit(straight, small, **settings)
    path = tmp_path / "run.safetensors"
    steps_per_epoch = -(-len(small.y_train) // 128)
    with pytest.raises(Interrupt):
        fit(_model(), small, checkpoint=path, after_step=_interrupt_at(steps_per_epoch, 2),
            **settings)  # fmt: skip
    resumed = _model(seed=42)
    history = fit(resumed, small, checkpoint=path, **settings)
    assert _same(_weights(resumed), _weights(straight))
    assert history["test_accuracy"] == expected_history["test_accuracy"]
    # A checkpoint without an average cannot continue one with it (nor the reverse).
    plain = tmp_path / "plain.safetensors"
    fit(_model(), small, epochs=1, progress=False, checkpoint=plain)
    rest = (
        "; resuming would mix two different runs. Pass resume=False to start over, "
        "or use another checkpoint path."
    )
    message = (
        f"The checkpoint {plain} was written with ema_decay=None, but this run has "
        f"ema_decay=0.9{rest}"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        fit(_model(), small, epochs=2, progress=False, checkpoint=plain, ema_decay=0.9)
    message = (
        f"The checkpoint {path} was written with ema_decay=0.95, but this run has "
        f"ema_decay=None{rest}"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        fit(_model(), small, epochs=4, progress=False, checkpoint=path, seed=5, lr=1e-2,
            batch_size=128)  # fmt: skip


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1, True, "0.9"])
def test_bad_weight_average_decay_is_explained(small, decay):
    message = f"ema_decay must be None or a decay in (0, 1); got {decay!r}."
    with pytest.raises(ValueError, match=re.escape(message)):
        fit(_model(), small, epochs=1, progress=False, ema_decay=decay)


# ---------------------------------------------------------------- recipes


def test_fit_takes_a_recipe_as_its_keywords(small):
    recipe = Recipe(epochs=2, lr=3e-3, batch_size=64, seed=5, lr_schedule="cosine")
    by_recipe, by_keywords, by_fit_kwargs = _model(), _model(), _model()
    first = fit(by_recipe, small, recipe=recipe, progress=False)
    fit(by_keywords, small, epochs=2, lr=3e-3, batch_size=64, seed=5, lr_schedule="cosine",
        progress=False)  # fmt: skip
    fit(by_fit_kwargs, small, **recipe.fit_kwargs(), progress=False)
    assert first["epoch"] == [1, 2] and first["lr"][0] == 3e-3
    assert _same(_weights(by_recipe), _weights(by_keywords))
    assert _same(_weights(by_recipe), _weights(by_fit_kwargs))


def test_fit_refuses_a_recipe_and_its_settings_together(small):
    message = (
        "fit got a recipe and also lr=0.1; put the setting in the recipe "
        "(dataclasses.replace(recipe, ...)) or pass keywords alone."
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        fit(_model(), small, recipe=Recipe(epochs=1), lr=0.1)
    message = "fit needs epochs=..., or a recipe=Recipe(...) holding them."
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        fit(_model(), small)
    message = "fit's recipe must be a Recipe; got dict {'epochs': 1}."
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        fit(_model(), small, recipe={"epochs": 1})
