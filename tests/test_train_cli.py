"""``python -m core.train``: foreground run, progress on stderr, run directory last on stdout;
the trainer's failure path; MirroredStrategy on two logical CPU devices."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core import runs, train
from core.training import trainer
from tests.conftest import REPO_ROOT
from tests.test_jobs import synthetic_data_root  # noqa: F401 - shared session fixture

TINY_SETTINGS = ["--set", "labels_per_class=2", "--set", "valid_size=43", "--set", "max_test_images=43",
                 "--set", "augmentation.rotation_degrees=0", "--set", "random_blur=0",
                 "--set", "epoch_repeats=1"]
CLI_TIMEOUT_SECONDS = 240


def _run_cli(arguments, data_root, runs_root, extra_code: str | None = None):
    environment = dict(os.environ, TLLAB_DATA_DIR=str(data_root), TLLAB_RUNS_DIR=str(runs_root),
                       TLLAB_MAX_CONCURRENT_JOBS="1")
    if extra_code is None:
        command = [sys.executable, "-m", "core.train", *arguments]
    else:
        command = [sys.executable, "-c", extra_code, *arguments]
    return subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_SECONDS)


def test_cli_trains_one_epoch_and_prints_the_run_directory_last(synthetic_data_root, tmp_path):
    runs_root = tmp_path / "cli-runs"
    result = _run_cli(["--model", "lenet5", "--preset", "seed", "--dataset", "synthetic-signs",
                       "--epochs", "1", "--runs-dir", str(runs_root), *TINY_SETTINGS],
                      synthetic_data_root, tmp_path / "unused")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == runs_root.resolve() and run_dir.is_dir()
    assert "Epoch 1/1 [" in result.stderr  # the progress bar goes to stderr
    status = runs.read_status(run_dir)
    assert status["state"] == runs.COMPLETED and status["device"] == "CPU"
    assert status["pid"] and status["host"] and status["started_at"] and status["ended_at"]
    metrics = runs.read_metrics(run_dir)
    assert metrics["epoch"].tolist() == [1]
    assert metrics["learning_rate"].iloc[0] == pytest.approx(0.001)
    assert metrics["epoch_seconds"].iloc[0] > 0
    config = runs.read_config(run_dir)
    assert config["labels_per_class"] == 2 and config["augmentation"]["rotation_degrees"] == 0
    results = runs.read_results(run_dir)
    assert results["num_train_images"] == 86 and results["num_test_images"] == 43
    assert len(results["confusion_matrix"]) == 43 and len(results["per_class_accuracy"]) == 43
    matrix = np.asarray(results["confusion_matrix"])
    assert matrix.sum() == 43  # test accuracy is the confusion matrix's diagonal share
    assert results["test_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert results["trainable_params"] == 64_511 and results["non_trainable_params"] == 0
    assert len(runs.read_class_names(run_dir)) == 43
    assert (run_dir / runs.MODEL_FILE).stat().st_size > 0
    assert "Test accuracy" in (run_dir / runs.LOG_FILE).read_text()


def test_cli_rejects_a_bad_setting_without_creating_a_run(tmp_path, capsys):
    runs_root = tmp_path / "cli-runs"
    code = train.main(["--model", "lenet5", "--runs-dir", str(runs_root), "--set", "dropout=2"])
    assert code == train.EXIT_USAGE
    assert "dropout must be a number in [0.0, 1.0)" in capsys.readouterr().err
    assert not runs_root.exists() or list(runs_root.iterdir()) == []


def test_set_parses_json_values_and_dotted_keys():
    config = {"model": "lenet5"}
    for assignment in ("epochs=3", "conv_filters=[8, 16]", "batch_norm=true",
                       "augmentation.zoom=0.1", "dataset=synthetic-signs"):
        train.apply_setting(config, assignment)
    assert config == {"model": "lenet5", "epochs": 3, "conv_filters": [8, 16], "batch_norm": True,
                      "augmentation": {"zoom": 0.1}, "dataset": "synthetic-signs"}
    with pytest.raises(ValueError, match="key=value"):
        train.apply_setting(config, "epochs")


def test_trainer_marks_a_failing_run_failed_with_error_and_traceback(isolated_roots):
    from core import jobs

    run_dir = jobs.create_job({"model": "lenet5", "dataset": "gtsrb", "epochs": 1})  # not installed here
    assert trainer.run_training(run_dir) == runs.FAILED
    status = runs.read_status(run_dir)
    assert status["state"] == runs.FAILED and "gtsrb" in status["error"].lower()
    assert status["ended_at"]
    assert "Traceback" in (run_dir / runs.LOG_FILE).read_text()


def test_mirrored_strategy_trains_on_two_logical_cpu_devices(synthetic_data_root, tmp_path):
    code = textwrap.dedent("""
        import sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
        from core import train
        sys.exit(train.main(sys.argv[1:]))
    """)
    runs_root = tmp_path / "mirrored-runs"
    result = _run_cli(["--model", "lenet5", "--preset", "seed", "--dataset", "synthetic-signs",
                       "--epochs", "1", "--distribute", "mirrored", "--runs-dir", str(runs_root),
                       *TINY_SETTINGS], synthetic_data_root, runs_root, extra_code=code)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    status = runs.read_status(run_dir)
    assert status["state"] == runs.COMPLETED, status.get("error")
    assert status["device"].startswith("mirrored: 2 ×")
    assert runs.read_config(run_dir)["distribute"] == "mirrored"
    assert len(runs.read_metrics(run_dir)) == 1


def test_console_progress_never_counts_past_the_epochs_steps():
    """With steps_per_execution Keras reports the last step of a compiled call, which can pass
    the epoch's end (288 of 273); the bar shows at most the epoch's steps."""
    import io

    from core.training.callbacks import ConsoleProgress

    stream = io.StringIO()
    progress = ConsoleProgress(total_epochs=2, stream=stream)
    progress.set_params({"steps": 273, "epochs": 2})
    progress.on_train_begin()
    progress.on_epoch_begin(0)
    progress._last_draw = float("-inf")  # draw now instead of waiting the 0.2 s throttle
    progress.on_train_batch_end(31)
    progress._last_draw = float("-inf")
    progress.on_train_batch_end(287)
    progress.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.9})
    drawn = stream.getvalue()
    assert "32/273" in drawn and "288/273" not in drawn
    assert drawn.count("273/273") == 2 and drawn.endswith("loss 0.5000, accuracy 0.9000\n")


def test_frozen_heap_freezes_the_objects_alive_at_train_begin_for_the_fit_only():
    import gc

    import keras

    from core.training.callbacks import FrozenHeap

    class FreezeProbe(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.frozen_counts = []

        def on_epoch_end(self, epoch, logs=None):
            self.frozen_counts.append(gc.get_freeze_count())

    assert gc.get_freeze_count() == 0
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    probe = FreezeProbe()
    model.fit(np.zeros((8, 3), np.float32), np.zeros(8, np.int64), epochs=2, verbose=0,
              callbacks=[FrozenHeap(), probe])
    assert len(probe.frozen_counts) == 2 and min(probe.frozen_counts) > 10_000  # TF's objects
    assert gc.get_freeze_count() == 0  # unfrozen when the fit ends


def test_a_fit_that_raises_leaves_no_heap_frozen_once_the_run_context_detaches(tmp_path):
    import gc

    import keras

    from core.training.trainer import RunContext

    class FailingEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("disk full")

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    context = RunContext(run_dir, {"model": "lenet5"}, extra_callbacks=[FailingEpoch()])
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError, match="disk full"):
        model.fit(np.zeros((8, 3), np.float32), np.zeros(8, np.int64), epochs=2, verbose=0,
                  validation_data=(np.zeros((4, 3), np.float32), np.zeros(4, np.int64)),
                  callbacks=context.callbacks(total_epochs=2))
    assert gc.get_freeze_count() > 10_000  # Keras skipped on_train_end: still frozen
    context.detach()
    assert gc.get_freeze_count() == 0
    context.detach()  # a second detach unfreezes nothing more
    assert gc.get_freeze_count() == 0
