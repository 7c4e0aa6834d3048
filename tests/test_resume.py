"""Resume: a killed or failed run continues from its last finished epoch (issue 11, part 6).

The first test is the judged scenario with a real detached worker killed by SIGKILL and
``python -m core.train --resume RUN_DIR`` as a real subprocess. The others run the trainer in
this process (one TensorFlow import) and interrupt it with a callback that raises, which ends
the run FAILED exactly as a crash would, with the backups of the finished epochs on disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from core import jobs, runs
from core.training import trainer
from tests.conftest import REPO_ROOT
from tests.test_jobs import TINY_JOB, job_env, submit, synthetic_data_root, wait_until  # noqa: F401

# Six epochs of about 0.3-0.7 s each: the test sees epoch 2's row and kills during epoch 3.
KILL_JOB = dict(TINY_JOB, epochs=6, labels_per_class=10, epoch_repeats=3)
# A small fixed task that a LeNet learns in a few epochs: five signs that look different (yield,
# stop, no entry, road work, keep right), 30 training images each, about 77 % test accuracy with
# synthetic-signs generator v3 and 79 % with v4 (20 images each gave 75 % with v2 but 41 % with
# v3, which redrew only the no-entry sign of these five).
EASY_JOB = dict(TINY_JOB, model="lenet5-transfer", preset="seed", strategy="scratch", epochs=6,
                classes=[13, 14, 17, 25, 38], labels_per_class=30, batch_size=16, valid_size=None,
                max_test_images=None, preprocessing={"color": "rgb", "equalization": "none"})
ACCURACY_NOISE = 0.12  # 150 test images; seeds alone move accuracy by about 0.05
CLI_TIMEOUT_SECONDS = 240


class CrashBeforeEpoch(keras.callbacks.Callback):
    """Raises when the run reaches a given 1-based epoch (counted over every fit stage)."""

    def __init__(self, crash_epoch: int):
        super().__init__()
        self.crash_epoch = int(crash_epoch)
        self.finished = 0

    def on_epoch_end(self, epoch, logs=None):
        self.finished += 1

    def on_epoch_begin(self, epoch, logs=None):
        if self.finished + 1 == self.crash_epoch:
            raise RuntimeError(f"simulated crash before epoch {self.crash_epoch}")


def epochs_written(run_dir) -> list[int]:
    return [int(epoch) for epoch in runs.read_metrics(run_dir)["epoch"]]


def run_in_process(config: dict, crash_epoch: int | None = None):
    """Creates a run and trains it here; returns (run_dir, final state)."""
    run_dir = jobs.create_job(config)
    extra = [CrashBeforeEpoch(crash_epoch)] if crash_epoch else None
    return run_dir, trainer.run_training(run_dir, extra_callbacks=extra)


def test_sigkilled_job_resumes_from_the_cli_and_writes_each_epoch_once(job_env):
    run_id = submit(job_env, KILL_JOB)
    run_dir = runs.run_path(run_id)
    wait_until(lambda: len(runs.read_metrics(run_dir)) >= 2, what="epoch 2 of the worker")
    assert jobs.send_signal(run_id, signal.SIGKILL)
    rows_at_kill = len(runs.read_metrics(run_dir))
    assert rows_at_kill in (2, 3), f"the kill came too late: {rows_at_kill} epochs were done"
    failed = wait_until(lambda: jobs.status(run_id)["state"] == runs.FAILED and jobs.status(run_id),
                        what="the killed run to be marked failed")
    assert "exited without finishing" in failed["error"]

    completed = subprocess.run(
        [sys.executable, "-m", "core.train", "--resume", str(run_dir)], cwd=REPO_ROOT,
        env=jobs.worker_environment(), capture_output=True, text=True, timeout=CLI_TIMEOUT_SECONDS)

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().splitlines()[-1] == str(run_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == runs.COMPLETED
    assert status["resume_count"] == 1 and status["resumed_from_state"] == runs.FAILED
    assert status["error"] is None
    assert epochs_written(run_dir) == [1, 2, 3, 4, 5, 6]
    assert "Resuming after epoch" in (run_dir / runs.LOG_FILE).read_text()
    assert not (run_dir / trainer.BACKUP_FOLDER).exists(), "backups are deleted once completed"
    assert runs.read_results(run_dir)["num_test_images"] == 43
    assert not list(run_dir.glob(".*.tmp*")), "no half-saved model is left behind"


def test_resume_refuses_runs_that_are_not_failed_or_cancelled(job_env):
    run_dir = jobs.create_job(TINY_JOB)  # queued, no worker
    with pytest.raises(ValueError, match=r"is queued; only a failed or cancelled run can be resumed"):
        jobs.prepare_resume(run_dir.name)
    runs.update_status(run_dir, state=runs.COMPLETED)
    with pytest.raises(ValueError, match="is completed"):
        jobs.prepare_resume(str(run_dir))
    with pytest.raises(ValueError, match="No run named"):
        jobs.prepare_resume("20990101-000000-no-such-run")


def test_cli_resume_rejects_config_options_and_unknown_runs(job_env):
    from core import train

    with pytest.raises(SystemExit) as usage:
        train.main(["--resume", "x", "--epochs", "3"])
    assert usage.value.code == 2
    assert train.main(["--resume", "20990101-000000-no-such-run"]) == train.EXIT_USAGE


def test_resumed_run_matches_an_uninterrupted_one_within_noise(job_env):
    keras.utils.set_random_seed(0)
    reference_dir, reference_state = run_in_process(EASY_JOB)
    crashed_dir, crashed_state = run_in_process(EASY_JOB, crash_epoch=4)
    assert (reference_state, crashed_state) == (runs.COMPLETED, runs.FAILED)
    assert epochs_written(crashed_dir) == [1, 2, 3]
    assert "simulated crash before epoch 4" in runs.read_status(crashed_dir)["error"]

    jobs.prepare_resume(crashed_dir.name)
    assert trainer.run_training(crashed_dir) == runs.COMPLETED

    assert epochs_written(crashed_dir) == [1, 2, 3, 4, 5, 6]
    reference = runs.read_results(reference_dir)
    resumed = runs.read_results(crashed_dir)
    print(f"test accuracy: uninterrupted {reference['test_accuracy']:.4f}, "
          f"resumed {resumed['test_accuracy']:.4f}")
    assert reference["test_accuracy"] > 0.6, "the task must be learnt for the comparison to mean much"
    assert abs(resumed["test_accuracy"] - reference["test_accuracy"]) <= ACCURACY_NOISE
    assert abs(resumed["best_val_accuracy"] - reference["best_val_accuracy"]) <= ACCURACY_NOISE
    # The first three epochs are the same computation in both runs (same seed, same data).
    reference_rows = runs.read_metrics(reference_dir).head(3)
    resumed_rows = runs.read_metrics(crashed_dir).head(3)
    assert list(reference_rows["loss"].round(4)) == list(resumed_rows["loss"].round(4))


@pytest.mark.slow
def test_staged_fine_tune_resumes_in_its_second_stage(job_env):
    source_dir, source_state = run_in_process(
        dict(TINY_JOB, model="lenet5-transfer", preset="seed", strategy="scratch",
             classes=[0, 1, 2], epochs=1))
    assert source_state == runs.COMPLETED
    config = dict(TINY_JOB, model="lenet5-transfer", preset="seed", strategy="fine-tune",
                  source_run=source_dir.name, classes=[3, 4, 5], epochs=5, head_epochs=2,
                  labels_per_class=5)
    run_dir, state = run_in_process(config, crash_epoch=4)  # stage 1 done, stage 2 at epoch 1 of 3
    assert state == runs.FAILED and epochs_written(run_dir) == [1, 2, 3]

    jobs.prepare_resume(run_dir.name)
    assert trainer.run_training(run_dir) == runs.COMPLETED

    metrics = runs.read_metrics(run_dir)
    assert [int(epoch) for epoch in metrics["epoch"]] == [1, 2, 3, 4, 5]
    resolved = runs.read_config(run_dir)
    head_rate = resolved["learning_rate"]
    tune_rate = head_rate * resolved["fine_tune_learning_rate_factor"]
    # Epochs 1-2: the head stage; 3-5: everything trainable at the lower rate, also after resume.
    assert list(metrics["learning_rate"].round(8)) == pytest.approx(
        [head_rate] * 2 + [tune_rate] * 3, rel=1e-5)
    assert runs.read_status(run_dir)["total_epochs"] == 5


def test_resume_of_a_cancelled_run_clears_the_cancel_request(job_env):
    run_dir = jobs.create_job(dict(TINY_JOB, epochs=3))
    runs.request_cancel(run_dir)
    assert trainer.run_training(run_dir) == runs.CANCELLED
    jobs.prepare_resume(run_dir.name)
    assert not runs.cancel_requested(run_dir)
    assert runs.read_status(run_dir)["state"] == runs.QUEUED
    assert trainer.run_training(run_dir) == runs.COMPLETED
    assert epochs_written(run_dir) == [1, 2, 3]


def test_a_half_written_metrics_line_is_cut_before_resuming(job_env):
    run_dir = jobs.create_job(TINY_JOB)
    runs.append_metrics(run_dir, {"epoch": 1, "loss": 1.0})
    with open(run_dir / runs.METRICS_FILE, "a", encoding="utf-8") as stream:
        stream.write("2,0.9")  # the worker died mid-write
    runs.update_status(run_dir, state=runs.FAILED, error="killed")
    jobs.prepare_resume(run_dir.name)
    assert (run_dir / runs.METRICS_FILE).read_text().splitlines()[-1].startswith("1,1.0")
    assert os.path.getsize(run_dir / runs.METRICS_FILE) == len(
        (run_dir / runs.METRICS_FILE).read_bytes())


@pytest.mark.slow
def test_backbone_fine_tuning_with_its_frozen_base_folded_resumes_in_its_second_stage(job_env):
    """Both stages fit on images (``bottleneck`` off), each through a copy of the model whose
    frozen part is folded (``folding.fold_for_inference(frozen_only=True)``); a crash in the
    second stage resumes there, and the saved model keeps the source run's frozen weights."""
    common = dict(model="mobilenetv2", dataset="synthetic-signs", image_size=32, classes=[13, 14],
                  labels_per_class=4, valid_size=8, batch_size=8, augmentation={})
    source_dir, source_state = run_in_process(dict(common, strategy="scratch", epochs=1))
    assert source_state == runs.COMPLETED
    config = dict(common, strategy="fine-tune", weights=f"run:{source_dir.name}", epochs=4,
                  fine_tune_epochs=2, fine_tune_blocks=1, bottleneck=False)
    run_dir, state = run_in_process(config, crash_epoch=4)
    assert state == runs.FAILED and epochs_written(run_dir) == [1, 2, 3]
    assert (run_dir / trainer.BACKUP_FOLDER / "stage-1").is_dir()

    jobs.prepare_resume(run_dir.name)
    assert trainer.run_training(run_dir) == runs.COMPLETED

    assert epochs_written(run_dir) == [1, 2, 3, 4]
    log = (run_dir / runs.LOG_FILE).read_text(encoding="utf-8")
    # Stage one folds the whole frozen base; stage two all but the top block (its 3 batch norms
    # and Conv_1_bn train).
    assert "Fitting through a copy with 52 batch norms and 4 zero paddings folded" in log
    assert "Fitting through a copy with 48 batch norms and 4 zero paddings folded" in log
    source = keras.saving.load_model(source_dir / runs.MODEL_FILE, compile=False)
    tuned = keras.saving.load_model(run_dir / runs.MODEL_FILE, compile=False)
    unfrozen = set(runs.read_results(run_dir)["unfrozen_layers"])
    assert unfrozen and "bn_Conv1" not in unfrozen
    for name in ("Conv1", "bn_Conv1", "block_1_depthwise", "block_1_depthwise_BN"):
        for saved, original in zip(tuned.get_layer(name).get_weights(),
                                   source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(saved, original)  # frozen, and saved unfolded


@pytest.mark.slow
def test_backbone_feature_extraction_on_cached_features_resumes(job_env):
    """The backbone family (MobileNetV2 at 32 px, weights from a scratch run of this test):
    feature extraction trains the head on bottleneck features; it resumes after a crash."""
    common = dict(model="mobilenetv2", dataset="synthetic-signs", image_size=32, classes=[13, 14],
                  labels_per_class=4, valid_size=8, batch_size=8, augmentation={})
    source_dir, source_state = run_in_process(dict(common, strategy="scratch", epochs=1))
    assert source_state == runs.COMPLETED
    config = dict(common, strategy="feature-extraction", weights=f"run:{source_dir.name}", epochs=4)
    run_dir, state = run_in_process(config, crash_epoch=3)
    assert state == runs.FAILED and epochs_written(run_dir) == [1, 2]
    assert (run_dir / trainer.BACKUP_FOLDER / "stage-0").is_dir()

    jobs.prepare_resume(run_dir.name)
    assert trainer.run_training(run_dir) == runs.COMPLETED

    assert epochs_written(run_dir) == [1, 2, 3, 4]
    results = runs.read_results(run_dir)
    assert results["bottleneck_cache_hit"] is True  # the resumed run reused the cached features
    assert results["num_test_images"] is not None
