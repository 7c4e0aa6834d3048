"""Time budgets: a resizable cosine schedule and the callback that ends a run in time."""

from __future__ import annotations

import logging

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from core import jobs, runs, worker  # noqa: E402
from core.models import lenet  # noqa: E402
from core.models.schedules import ResizableCosineDecay  # noqa: E402
from core.training import lenet_family, lenet_transfer_family  # noqa: E402
from core.training.callbacks import TimeBudget  # noqa: E402
from tests.test_jobs import synthetic_data_root  # noqa: E402,F401 - shared session fixture

RATE = 0.002
TOTAL_STEPS = 40


class ZeroAfterEachStep(keras.callbacks.Callback):
    """Reads the rate of each SGD step off a 1x1 kernel (loss = output, input 1: the gradient is
    exactly 1, so a zero kernel becomes -rate) and zeroes it again."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        kernel = self.model.layers[0].kernel
        self.rates.append(-float(keras.ops.convert_to_numpy(kernel)[0, 0]))
        kernel.assign(np.zeros((1, 1), "float32"))


def _rates_used_in_training(schedule, steps: int) -> np.ndarray:
    model = keras.Sequential([keras.Input((1,)),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=lambda target, output: keras.ops.sum(output))
    reader = ZeroAfterEachStep()
    ones = np.ones((steps, 1), "float32")
    model.fit(ones, ones, batch_size=1, epochs=1, shuffle=False, verbose=0, callbacks=[reader])
    return np.array(reader.rates, dtype="float32")


def test_resizable_cosine_decay_gives_keras_cosine_decay_rates_and_can_be_shortened():
    resizable = ResizableCosineDecay(RATE, TOTAL_STEPS)
    reference = keras.optimizers.schedules.CosineDecay(RATE, decay_steps=TOTAL_STEPS, alpha=0.0)
    steps = range(TOTAL_STEPS + 5)
    ours = np.array([float(resizable(step)) for step in steps], dtype="float32")
    theirs = np.array([float(reference(step)) for step in steps], dtype="float32")
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=RATE * 1e-6)  # eager: last bit may differ
    assert ours[0] == pytest.approx(RATE) and ours[TOTAL_STEPS] == 0.0
    # In compiled training steps the rates are CosineDecay's to the last bit (TensorFlow folds
    # its division into a product with the float32 inverse, which this schedule computes).
    trained_ours = _rates_used_in_training(ResizableCosineDecay(RATE, TOTAL_STEPS), TOTAL_STEPS + 2)
    trained_theirs = _rates_used_in_training(reference, TOTAL_STEPS + 2)
    if keras.backend.backend() == "tensorflow":
        np.testing.assert_array_equal(trained_ours, trained_theirs)
    np.testing.assert_allclose(trained_ours, theirs[:TOTAL_STEPS + 2], rtol=0, atol=RATE * 1e-6)

    resizable.set_decay_steps(20)
    assert resizable.decay_steps == 20
    assert float(resizable(10)) == pytest.approx(RATE / 2)
    assert float(resizable(20)) == 0.0 and float(resizable(30)) == 0.0
    copy = ResizableCosineDecay.from_config(resizable.get_config())
    assert copy.decay_steps == 20 and float(copy(10)) == pytest.approx(RATE / 2)
    serialized = keras.saving.serialize_keras_object(resizable)
    assert keras.saving.deserialize_keras_object(serialized).decay_steps == 20
    for bad in (0, -3, "ten", True):
        with pytest.raises(ValueError, match="decay_steps must be a positive number of steps"):
            resizable.set_decay_steps(bad)


def test_a_compiled_training_step_reads_the_resized_schedule():
    """Shortening the schedule to the steps already taken makes the rate 0: weights stop moving."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    schedule = ResizableCosineDecay(0.05, decay_steps=100)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  steps_per_execution=4)
    inputs = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    labels = (inputs[:, 0] > 0).astype("int32")
    model.fit(inputs, labels, batch_size=8, epochs=1, verbose=0)  # 8 steps at a rate > 0
    after_first = [weight.copy() for weight in model.get_weights()]
    model.fit(inputs, labels, batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(after_first, model.get_weights()))
    schedule.set_decay_steps(int(model.optimizer.iterations.numpy()))  # the same traced step
    before = [weight.copy() for weight in model.get_weights()]
    model.fit(inputs, labels, batch_size=8, epochs=1, verbose=0)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeModel:
    stop_training = False


class ProgressStub:
    def __init__(self, total_epochs):
        self.total_epochs = total_epochs


class ScheduleSpy:
    def __init__(self):
        self.calls = []

    def set_decay_steps(self, steps):
        self.calls.append(steps)


def _begun_budget(budget_seconds: float, epochs: int, **options) -> tuple[TimeBudget, FakeClock]:
    """A ``TimeBudget`` on a fake clock and model, after ``on_train_begin`` of a fit of
    ``epochs`` epochs."""
    clock = FakeClock()
    budget = TimeBudget(budget_seconds, clock=clock, **options)
    budget.set_model(FakeModel())
    budget.set_params({"epochs": epochs})
    budget.on_train_begin()
    return budget, clock


def test_time_budget_moves_the_last_epoch_to_fit_and_fits_the_schedule_to_it(caplog):
    """Budget 100 s, 10 epochs planned: the first takes 20 s (tracing), the rest 10 s each."""
    schedule = ResizableCosineDecay(RATE, 10 * 4)
    progress = ProgressStub(10)
    budget, clock = _begun_budget(100, 10, schedule=schedule, steps_per_epoch=4,
                                  progress=[progress], logger=logging.getLogger("test_time_budget"))
    seen = []
    with caplog.at_level(logging.INFO, logger="test_time_budget"):
        for epoch in range(10):
            clock.now += 20.0 if epoch == 0 else 10.0
            budget.on_epoch_end(epoch)
            seen.append((budget.last_epoch, schedule.decay_steps, progress.total_epochs))
            if budget.model.stop_training:
                break
    # After epoch 1 alone nothing moves (its 20 s include tracing; another 20 s would fit).
    # After epoch 2 the steady 10 s epochs are known: 7 more fit, so it ends after 9 of 10.
    assert seen[0] == (10, 10 * 4, 10)
    assert seen[1] == (9, 9 * 4, 9)
    assert len(seen) == 9 and seen[-1] == (9, 9 * 4, 9) and clock.now == 100.0
    assert budget.summary() == {"budget_seconds": 100.0, "planned_epochs": 10, "last_epoch": 9,
                                "ended_early": True, "schedule_fitted": True}
    assert "training ends after epoch 9 of 10" in caplog.text


def test_time_budget_that_is_never_reached_changes_nothing():
    schedule = ScheduleSpy()
    # The first epoch (60 s with tracing) alone would predict an overrun (50 + 3 x 60 > 200);
    # the budget waits for a steady epoch (30 s), and then all three fit.
    budget, clock = _begun_budget(200, 3, started=-50.0, schedule=schedule, steps_per_epoch=5)
    for epoch, seconds in enumerate((60.0, 30.0, 30.0)):
        clock.now += seconds
        budget.on_epoch_end(epoch)
        assert budget.model.stop_training is (epoch == 2)  # after the planned last epoch only
    assert schedule.calls == [] and budget.summary()["ended_early"] is False


def test_time_budget_moves_the_last_epoch_back_only_with_half_an_epoch_to_spare():
    """10 s epochs, budget 95 s: ends after 9. Then epochs speed up (7 s, then 4 s): while
    epoch 10 would fit with under half an epoch to spare it stays at 9, then it moves to 10."""
    schedule = ScheduleSpy()
    budget, clock = _begun_budget(95, 10, schedule=schedule, steps_per_epoch=2)
    for epoch, seconds in enumerate((10.0, 10.0, 10.0)):
        clock.now += seconds
        budget.on_epoch_end(epoch)
    assert budget.last_epoch == 9 and schedule.calls == [18]  # 30 s used, 6 more fit
    clock.now += 7.0  # epoch 4 ends at 37 s; the mean of the last three is 9 s
    budget.on_epoch_end(3)
    # 58 s left = 6.4 epochs of 9 s: epoch 10 would fit, but with 0.4 of an epoch to spare.
    assert budget.last_epoch == 9 and schedule.calls == [18]
    clock.now += 4.0  # epoch 5 ends at 41 s; mean 7 s: 54 s left = 7.7 epochs, 7.2 with the margin
    budget.on_epoch_end(4)
    assert budget.last_epoch == 10 and schedule.calls == [18, 20]


def test_time_budget_stops_after_the_first_epoch_when_another_would_overrun():
    budget, clock = _begun_budget(25, 5)
    clock.now = 20.0
    budget.on_epoch_end(0)
    assert budget.model.stop_training and budget.summary() == {
        "budget_seconds": 25.0, "planned_epochs": 5, "last_epoch": 1, "ended_early": True,
        "schedule_fitted": False}  # no schedule given
    with pytest.raises(ValueError, match="budget_seconds must be a positive number, received 0"):
        TimeBudget(0)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int"):
        TimeBudget(10, schedule=ScheduleSpy())


def test_presets_and_families_set_and_check_the_budget():
    assert lenet_family.resolve_config({"model": "lenet5", "preset": "plus"})[
        "time_budget_seconds"] == lenet.PLUS_TIME_BUDGET_SECONDS
    for preset in ("seed", "classic", "committee"):
        assert lenet_family.resolve_config({"model": "lenet5", "preset": preset})["time_budget_seconds"] == 0
    for bad in (-1, 1.5, "fast", 10**9):
        with pytest.raises(ValueError, match=r"time_budget_seconds must be an int in 0\.\.604800"):
            lenet_family.resolve_config({"model": "lenet5", "time_budget_seconds": bad})
    transfer = lenet_transfer_family.resolve_config({"model": "lenet5-transfer", "dataset": "synthetic-signs"})
    assert transfer["time_budget_seconds"] == 0  # its preset (plus) has one, the family does not
    with pytest.raises(ValueError, match="runs have no time budget.*received time_budget_seconds=60"):
        lenet_transfer_family.resolve_config({"model": "lenet5-transfer", "dataset": "synthetic-signs",
                                              "time_budget_seconds": 60})


def test_a_lenet_job_over_its_budget_ends_after_one_epoch_and_says_so(synthetic_data_root, monkeypatch,
                                                                      isolated_roots):
    """A 1 s budget is spent before the first epoch ends: one epoch, COMPLETED, recorded."""
    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    run_dir = jobs.create_job({"model": "lenet5", "preset": "plus", "dataset": "synthetic-signs",
                               "epochs": 3, "labels_per_class": 4, "max_test_images": 43,
                               "conv_filters": [4, 8, 8], "dense_units": [16],
                               "spatial_transformer": False, "time_budget_seconds": 1})
    assert worker.run(run_dir) == runs.COMPLETED, runs.read_status(run_dir).get("error")
    assert len(runs.read_metrics(run_dir)) == 1
    results = runs.read_results(run_dir)
    assert results["time_budget"] == {"budget_seconds": 1.0, "planned_epochs": 3, "last_epoch": 1,
                                      "ended_early": True, "schedule_fitted": True}
    assert results["test_accuracy"] is not None
    log = (run_dir / runs.LOG_FILE).read_text()
    assert "Time budget 1 s" in log and "training ends after epoch 1 of 3" in log
