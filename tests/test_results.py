"""core.results: preset figures and the seed spread come from run folders, never from constants."""

from __future__ import annotations

import pytest

from core import reports, results, runs
from core.charts import training as training_charts
from core.training import lenet_family
from tests.conftest import run_page


def write_gtsrb_run(runs_root, seed: int, val_curve, test_accuracy, *, preset: str = "seed",
                    extra: dict | None = None, state: str = runs.COMPLETED, older_than: tuple = ()):
    """A finished GTSRB LeNet run folder with the preset's resolved settings.

    ``older_than``: config keys the run predates (left out of its config.json).
    """
    config = lenet_family.resolve_config({"model": "lenet5", "preset": preset, "seed": seed, **(extra or {})})
    for key in older_than:
        del config[key]
    run_dir = runs.create_run(config, runs_root)
    for epoch, value in enumerate(val_curve, start=1):
        runs.append_metrics(run_dir, {"epoch": epoch, "loss": 1.0 / epoch, "accuracy": value,
                                      "val_loss": 1.1 / epoch, "val_accuracy": value,
                                      "learning_rate": 0.001, "epoch_seconds": 3.0})
    runs.write_status(run_dir, state=state, started_at="2026-12-01T00:00:00+00:00",
                      ended_at="2026-12-01T00:01:40+00:00")
    runs.write_results(run_dir, {"test_accuracy": test_accuracy, "num_test_images": 200})
    return run_dir


def test_seed_spread_is_min_mean_max_over_the_newest_default_run_of_each_seed(tmp_path):
    write_gtsrb_run(tmp_path, 0, [0.50, 0.70, 0.90], 0.93)
    write_gtsrb_run(tmp_path, 1, [0.60, 0.80, 0.94], 0.96)
    write_gtsrb_run(tmp_path, 2, [0.40, 0.75, 0.92, 0.95], 0.95)
    # Not counted: another preset, a changed setting, a failed run.
    write_gtsrb_run(tmp_path, 0, [0.1, 0.1, 0.1], 0.10, preset="plus")
    write_gtsrb_run(tmp_path, 1, [0.1, 0.1, 0.1], 0.10, extra={"dropout": 0.5})
    write_gtsrb_run(tmp_path, 2, [0.1, 0.1, 0.1], 0.10, state=runs.FAILED)

    spread = results.seed_spread(runs.list_runs(tmp_path), "seed")

    assert spread.seeds == [0, 1, 2]
    assert spread.epochs == [1, 2, 3]  # the shortest curve
    assert spread.low == pytest.approx([0.40, 0.70, 0.90])
    assert spread.high == pytest.approx([0.60, 0.80, 0.94])
    assert spread.mean == pytest.approx([0.50, 0.75, 0.92])
    assert spread.best_val_accuracy == pytest.approx({0: 0.90, 1: 0.94, 2: 0.95})
    assert spread.test_accuracy == pytest.approx({0: 0.93, 1: 0.96, 2: 0.95})
    assert spread.mean_test_accuracy == pytest.approx((0.93 + 0.96 + 0.95) / 3)
    assert spread.test_images == 200


def test_one_seed_is_not_a_spread(tmp_path):
    write_gtsrb_run(tmp_path, 0, [0.5, 0.9], 0.93)
    assert results.seed_spread(runs.list_runs(tmp_path), "seed") is None


def test_preset_rows_give_each_seed_the_mean_the_command_and_the_anchor(tmp_path):
    write_gtsrb_run(tmp_path, 0, [0.5, 0.97], 0.945)
    write_gtsrb_run(tmp_path, 1, [0.5, 0.98], 0.965)

    rows = {row["preset"]: row for row in results.preset_rows(runs.list_runs(tmp_path))}

    seed = rows["seed"]
    assert seed["runs"] == 2
    assert seed["val accuracy"] == "97.50%"
    assert seed["test accuracy"] == "95.50% (seed 0: 94.50%, seed 1: 96.50%)"
    assert seed["test images"] == 200
    assert seed["training time (s)"] == 100
    assert "--preset seed" in seed["command"] and "95.5%" in seed["published anchor"]
    assert rows["plus"]["runs"] == 0 and rows["plus"]["test accuracy"] == "—"


def test_a_run_older_than_a_preset_setting_counts_only_if_it_trained_as_the_preset_does(tmp_path):
    # Runs made before ``weight_decay`` existed trained without it: still the seed preset (0),
    # no longer the plus preset (0.05 since round 37).
    write_gtsrb_run(tmp_path, 0, [0.5, 0.97], 0.95, older_than=("weight_decay",))
    write_gtsrb_run(tmp_path, 0, [0.5, 0.99], 0.99, preset="plus", older_than=("weight_decay",))
    write_gtsrb_run(tmp_path, 1, [0.5, 0.995], 0.985, preset="plus")

    summaries = runs.list_runs(tmp_path)

    assert [summary.config["seed"] for summary in results.preset_runs(summaries, "seed")] == [0]
    assert [summary.config["seed"] for summary in results.preset_runs(summaries, "plus")] == [1]
    older_plus = next(summary for summary in summaries
                      if summary.config["preset"] == "plus" and "weight_decay" not in summary.config)
    changes = reports.config_diff(older_plus.config)
    assert [(change.setting, change.value, change.default) for change in changes] == [
        ("weight_decay", 0.0, 0.05)]


def test_the_band_is_drawn_on_the_accuracy_panel(tmp_path):
    write_gtsrb_run(tmp_path, 0, [0.5, 0.9], 0.93)
    write_gtsrb_run(tmp_path, 1, [0.6, 0.8], 0.95)
    spread = results.seed_spread(runs.list_runs(tmp_path), "seed")
    metrics = runs.read_metrics(next(iter(tmp_path.iterdir())))

    figure = training_charts.learning_curves(metrics, [0.7, 0.8], reference_band=spread)

    band = [trace for trace in figure.data if trace.fill == "tonexty"]
    assert len(band) == 1 and list(band[0].y) == pytest.approx([0.5, 0.8])
    assert "seeds 0, 1" in band[0].name


def test_home_and_train_pages_show_the_measured_figures(isolated_roots):
    runs_root = isolated_roots["runs"]
    write_gtsrb_run(runs_root, 0, [0.5, 0.97], 0.945)
    write_gtsrb_run(runs_root, 1, [0.5, 0.98], 0.965)

    home = run_page("pages/home.py")
    assert not home.exception
    table = next(frame.value for frame in home.dataframe if "preset" in frame.value.columns)
    assert list(table["preset"]) == ["seed", "plus", "committee", "classic"]
    assert table["test accuracy"][0].startswith("95.50%")

    train = run_page("pages/train_lenet.py")
    assert not train.exception
    spread_table = next(frame.value for frame in train.dataframe if "seed" in frame.value.columns)
    assert list(spread_table["seed"]) == [0, 1]
    assert any("Mean test accuracy over seeds 95.50%" in caption.value for caption in train.caption)
