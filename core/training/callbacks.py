"""Keras callbacks that write a run folder while ``model.fit`` runs.

They are assembled by ``RunContext.callbacks`` (``core.training.trainer``); families never build
them by hand. Every callback only writes files (no Streamlit, no threads), and the per-batch work
is a clock read and one ``os.path.exists`` so the job path costs about the same as a bare fit.

* ``MetricsLogger``: appends one ``metrics.csv`` row per epoch (1-based, ``epoch_offset`` added).
* ``ProgressReporter``: ``status.json`` fields ``epoch``, ``total_epochs``, ``batch``,
  ``batches_per_epoch``, ``epoch_started_at``; at most one write per ``min_interval_seconds``.
* ``CancelOnRequest``: stops training after the current batch once ``cancel.request`` exists.
* ``BestModelSaver``: saves ``model.keras`` whenever ``val_accuracy`` improves.
* ``ConsoleProgress``: a text progress bar on stderr for ``python -m core.train``.
* ``TimeBudget``: ends training early enough to finish within a time budget, shortening a
  resizable learning-rate schedule to match.
* ``RunBackup``: Keras's ``BackupAndRestore`` for one ``fit`` stage of a run (resume support).
* ``FrozenHeap``: moves the objects alive when training starts out of Python's garbage collector's
  reach for the ``fit`` (``gc.freeze``).
"""

from __future__ import annotations

import gc
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import keras

from core import runs
from core.files import write_atomic

PROGRESS_MIN_INTERVAL_SECONDS = 1.0
MONITOR = "val_accuracy"


class FrozenHeap(keras.callbacks.Callback):
    """Freezes the objects alive when training starts (``gc.freeze``) until it ends.

    Importing TensorFlow and Keras and building a model leave millions of objects that Python's
    cyclic garbage collector scans in full again and again while ``fit`` runs, though none of them
    is garbage. Measured with ``perf`` on a 2-core AMD EPYC during the seed LeNet's steady epochs,
    those scans were about 3 % of the process's CPU time, and 0.2 % with the heap frozen. Objects
    created during training are still collected as usual; ``on_train_end`` unfreezes (a frozen
    object that later became garbage would otherwise never be freed).

    Keras does not call ``on_train_end`` when ``fit`` raises, so whoever runs the ``fit`` calls
    ``release()`` afterwards as well (``RunContext.detach`` does, for every heap it handed out);
    it unfreezes only a heap this callback froze and not yet released.
    """

    def __init__(self):
        super().__init__()
        self.frozen = False

    def on_train_begin(self, logs=None):
        gc.collect()
        gc.freeze()
        self.frozen = True

    def on_train_end(self, logs=None):
        self.release()

    def release(self) -> None:
        """Unfreezes the heap if this callback froze it and has not unfrozen it yet."""
        if self.frozen:
            self.frozen = False
            gc.unfreeze()


def current_learning_rate(model) -> float | None:
    """Reads the optimizer's current learning rate (schedules included) as a float."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except Exception:  # noqa: BLE001 - an exotic optimizer must not break the metrics row
        return None


class MetricsLogger(keras.callbacks.Callback):
    """Appends ``loss, accuracy, val_loss, val_accuracy, learning_rate, epoch_seconds`` per epoch.

    Args:
        run_dir: the run folder.
        epoch_offset: epochs already written by earlier stages; the row's epoch is
            ``epoch_offset + keras_epoch + 1``.
        skip_written: a resumed run: an epoch that already has a row (written just before the
            worker died, so its backup was not saved and the epoch runs again) is not written
            twice, so ``metrics.csv`` holds every epoch exactly once.
    """

    def __init__(self, run_dir: str | os.PathLike, epoch_offset: int = 0, skip_written: bool = False):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.epoch_offset = int(epoch_offset)
        self.skip_written = bool(skip_written)
        self._epoch_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {
            "loss": logs.get("loss"),
            "accuracy": logs.get("accuracy", logs.get("sparse_categorical_accuracy")),
            "val_loss": logs.get("val_loss"),
            "val_accuracy": logs.get("val_accuracy", logs.get("val_sparse_categorical_accuracy")),
            "learning_rate": current_learning_rate(self.model),
            "epoch_seconds": round(time.perf_counter() - self._epoch_start, 3),
        }
        row = {key: _as_float(value) for key, value in row.items()}
        row["epoch"] = self.epoch_offset + epoch + 1
        if self.skip_written:
            written = runs.read_metrics(self.run_dir)["epoch"]
            if (written == row["epoch"]).any():
                return
        runs.append_metrics(self.run_dir, row)


def _as_float(value):
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class ProgressReporter(keras.callbacks.Callback):
    """Writes progress within the epoch to ``status.json``, throttled.

    Args:
        run_dir: the run folder.
        total_epochs: epochs of the whole run (all stages), shown as "epoch 3 of 20".
        epoch_offset: epochs done by earlier stages.
        min_interval_seconds: at most one ``status.json`` write per this many seconds.
    """

    def __init__(self, run_dir, total_epochs: int, epoch_offset: int = 0,
                 min_interval_seconds: float = PROGRESS_MIN_INTERVAL_SECONDS):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.total_epochs = int(total_epochs)
        self.epoch_offset = int(epoch_offset)
        self.min_interval_seconds = float(min_interval_seconds)
        self._last_write = 0.0
        self._epoch = 0
        self._batches_per_epoch = None

    def _write(self, **fields):
        self._last_write = time.monotonic()
        try:
            runs.update_status(self.run_dir, **fields)
        except runs.RunLockTimeout:
            pass  # progress is best effort: skip this write rather than write unlocked or stop fit

    def on_train_begin(self, logs=None):
        self._batches_per_epoch = (self.params or {}).get("steps")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = self.epoch_offset + epoch + 1
        self._write(epoch=self._epoch, total_epochs=self.total_epochs, batch=0,
                    batches_per_epoch=self._batches_per_epoch, epoch_started_at=time.time())

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self._last_write >= self.min_interval_seconds:
            self._write(epoch=self._epoch, batch=batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self._write(epoch=self._epoch, batch=self._batches_per_epoch, epochs_done=self._epoch)


class CancelOnRequest(keras.callbacks.Callback):
    """Sets ``model.stop_training`` after the batch during which ``cancel.request`` appeared.

    Args:
        run_dir: the run folder.
        on_cancel: called once when the request is seen (the ``RunContext`` records it so the
            run ends CANCELLED rather than COMPLETED).
    """

    def __init__(self, run_dir, on_cancel: Callable[[], None] | None = None):
        super().__init__()
        self.cancel_path = os.fspath(Path(run_dir) / runs.CANCEL_FILE)
        self.on_cancel = on_cancel
        self.cancelled = False

    def _check(self):
        if not self.cancelled and os.path.exists(self.cancel_path):
            self.cancelled = True
            self.model.stop_training = True
            if self.on_cancel is not None:
                self.on_cancel()
        elif self.cancelled:
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_epoch_begin(self, epoch, logs=None):
        self._check()


class BestModelSaver(keras.callbacks.Callback):
    """Saves ``model.keras`` (atomically) whenever ``val_accuracy`` beats the best so far.

    Args:
        path: where to save, normally ``RUN_DIR/model.keras``.
        model_to_save: the model to write instead of the one being fitted, e.g. the full
            composed model when only a bottleneck head is trained; default the fitted model.
        initial_best: best value reached by earlier stages (from ``metrics.csv``), so a second
            stage only overwrites the file with something at least as good (ties: the later epoch).
        monitor: the log key; ``val_accuracy`` (falls back to ``accuracy`` without validation).
    """

    def __init__(self, path, model_to_save=None, initial_best: float | None = None,
                 monitor: str = MONITOR):
        super().__init__()
        self.path = Path(path)
        self.model_to_save = model_to_save
        self.monitor = monitor
        self.best = -math.inf if initial_best is None or math.isnan(initial_best) else float(initial_best)
        self.saved_epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            value = logs.get(self.monitor.removeprefix("val_"))
        if value is None:
            return
        value = float(value)
        if value >= self.best or not self.path.exists():  # ties: the later, better-trained epoch
            self.best = max(value, self.best)
            save_model_atomic(self.model_to_save or self.model, self.path)
            self.saved_epochs += 1


def save_model_atomic(model, path) -> None:
    """Saves a Keras model through ``core.files.write_atomic``, so readers never load half a
    file."""
    write_atomic(Path(path), model.save)


class ConsoleProgress(keras.callbacks.Callback):
    """A one-line text progress bar per epoch on ``stream`` (stderr), for the CLI.

    Args:
        total_epochs: epochs of the whole run.
        epoch_offset: epochs done by earlier stages.
        stream: where to draw; default ``sys.stderr`` (stdout is kept for the run directory).
        width: bar width in characters.
    """

    def __init__(self, total_epochs: int, epoch_offset: int = 0, stream=None, width: int = 30):
        super().__init__()
        self.total_epochs = int(total_epochs)
        self.epoch_offset = int(epoch_offset)
        self.stream = stream or sys.stderr
        self.width = int(width)
        self._steps = None
        self._epoch = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0

    def on_train_begin(self, logs=None):
        self._steps = (self.params or {}).get("steps")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = self.epoch_offset + epoch + 1
        self._start = time.perf_counter()
        self._draw(0)

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self._last_draw >= 0.2:
            self._last_draw = now
            # With ``steps_per_execution`` Keras reports the last step of each compiled call,
            # rounded up past the epoch's end (288 of 273 steps at 32 per call): clamp it.
            self._draw(batch + 1 if not self._steps else min(batch + 1, self._steps))

    def _draw(self, done: int, suffix: str = "", end: str = "") -> None:
        steps = self._steps or 0
        fraction = done / steps if steps else 0.0
        filled = int(round(self.width * fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self._start
        self.stream.write(f"\rEpoch {self._epoch}/{self.total_epochs} [{bar}] {done}/{steps or '?'} "
                          f"{elapsed:5.1f}s{suffix}{end}")
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"{key} {float(logs[key]):.4f}" for key in
                 ("loss", "accuracy", "val_loss", "val_accuracy") if logs.get(key) is not None]
        self._draw(self._steps or 0, suffix=" - " + ", ".join(parts), end="\n")


# Epochs after the first whose mean predicts the next one (the first includes tracing).
TIME_BUDGET_RECENT_EPOCHS = 3
# A moved last epoch moves back later only if the extra epochs fit with this share of an epoch
# to spare, so a prediction hovering at the limit does not make it flap (18, 19, 18, ...).
TIME_BUDGET_EXTEND_MARGIN = 0.5


class TimeBudget(keras.callbacks.Callback):
    """Ends training early enough that the last epoch ends within ``budget_seconds``.

    After each epoch from the second on, it predicts the next epoch's time as the mean of the
    last ``TIME_BUDGET_RECENT_EPOCHS`` epochs after the first (the first also traces the training
    step and warms up, so it overstates: a plus epoch 1 took 49 s here, the next ones 28 s).
    When the epochs left would not all fit, the run's last epoch moves earlier, and later back
    towards the planned number if epochs get faster again, with ``TIME_BUDGET_EXTEND_MARGIN`` of
    an epoch to spare (never beyond the planned number); at least one epoch always runs. On each move it calls ``schedule.set_decay_steps(last_epoch * steps_per_epoch)``
    so a resizable schedule (``core.models.schedules.ResizableCosineDecay``) still ends at the
    last epoch, and sets ``total_epochs`` on the ``progress`` callbacks. After the first epoch
    alone it only stops training, when another epoch as long as the first would overrun the
    budget. After the last epoch it sets ``model.stop_training``. A run whose budget never
    binds trains exactly as it would without one.

    Args:
        budget_seconds: seconds from ``started`` to the end of the last epoch (> 0).
        started: the ``clock()`` reading the budget counts from; default when ``fit`` begins.
        schedule: an object with ``set_decay_steps(steps)``, or None (a constant rate, or a
            schedule that keeps its steps).
        steps_per_epoch: optimizer steps per epoch (needed with ``schedule``).
        progress: callbacks with a ``total_epochs`` attribute (status.json, the progress bar).
        epoch_offset: epochs of earlier stages (counted in the progress totals).
        logger: a ``logging.Logger`` for the decisions, or None.
        clock: monotonic seconds; tests pass a fake.
    """

    def __init__(self, budget_seconds: float, started: float | None = None, *, schedule=None,
                 steps_per_epoch: int | None = None, progress=(), epoch_offset: int = 0,
                 logger=None, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        if isinstance(budget_seconds, bool) or not isinstance(budget_seconds, (int, float)) or (
                not budget_seconds > 0):
            raise ValueError(f"budget_seconds must be a positive number, received {budget_seconds!r}")
        if schedule is not None and not (isinstance(steps_per_epoch, int) and steps_per_epoch >= 1):
            raise ValueError("steps_per_epoch must be a positive int when a schedule is given, "
                             f"received {steps_per_epoch!r}")
        self.budget_seconds = float(budget_seconds)
        self.started = started
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self.progress = list(progress)
        self.epoch_offset = int(epoch_offset)
        self.logger = logger
        self.clock = clock
        self.planned_epochs: int | None = None
        self.last_epoch: int | None = None
        self.epoch_seconds: list[float] = []
        self._mark = 0.0
        self._progress_totals = [int(item.total_epochs) for item in self.progress]

    def on_train_begin(self, logs=None):
        self._mark = self.clock()
        if self.started is None:
            self.started = self._mark
        self.planned_epochs = int((self.params or {}).get("epochs") or 1)
        self.last_epoch = self.planned_epochs

    def predicted_epoch_seconds(self) -> float:
        """The time the next epoch is expected to take (see the class docstring)."""
        steady = self.epoch_seconds[1:][-TIME_BUDGET_RECENT_EPOCHS:]
        return sum(steady) / len(steady) if steady else self.epoch_seconds[0]

    def _last_epoch_that_fits(self, done: int, used: float, per_epoch: float) -> int:
        per_epoch = max(per_epoch, 1e-9)
        fitting = max(0, math.floor((self.budget_seconds - used) / per_epoch))
        if len(self.epoch_seconds) < 2:  # only the first epoch measured: stop or wait
            return done if fitting == 0 else self.last_epoch
        last = max(done, min(self.planned_epochs, done + fitting))
        if last > self.last_epoch:  # moving back towards the plan: only with time to spare
            spare = self.budget_seconds - used - TIME_BUDGET_EXTEND_MARGIN * per_epoch
            last = max(self.last_epoch, min(last, done + max(0, math.floor(spare / per_epoch))))
        return last

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        self.epoch_seconds.append(now - self._mark)
        self._mark = now
        done = int(epoch) + 1
        used = now - self.started
        per_epoch = self.predicted_epoch_seconds()
        last = self._last_epoch_that_fits(done, used, per_epoch)
        if last != self.last_epoch:
            self._move_last_epoch(last, done, used, per_epoch)
        if done >= self.last_epoch:
            self.model.stop_training = True

    def _move_last_epoch(self, last: int, done: int, used: float, per_epoch: float) -> None:
        self.last_epoch = last
        if self.schedule is not None and last > done:
            self.schedule.set_decay_steps(last * self.steps_per_epoch)
        for item, total in zip(self.progress, self._progress_totals):
            item.total_epochs = total - (self.planned_epochs - last)
        if self.logger is not None:
            self.logger.info(
                "Time budget %.0f s: %.0f s used after epoch %d, about %.0f s per epoch, so "
                "training ends after epoch %d of %d%s", self.budget_seconds, used,
                self.epoch_offset + done, per_epoch, self.epoch_offset + last,
                self.epoch_offset + self.planned_epochs,
                " (learning-rate schedule fitted to it)" if self.schedule is not None and last > done
                else "")

    def summary(self) -> dict:
        """``budget_seconds``, ``planned_epochs``, ``last_epoch`` (where training ended or is to
        end, counted with ``epoch_offset``), ``ended_early`` (last before planned) and
        ``schedule_fitted`` (ended early with a schedule shortened to match)."""
        if self.planned_epochs is None:
            return {"budget_seconds": self.budget_seconds, "planned_epochs": None,
                    "last_epoch": None, "ended_early": False, "schedule_fitted": False}
        ended_early = self.last_epoch < self.planned_epochs
        return {"budget_seconds": self.budget_seconds,
                "planned_epochs": self.epoch_offset + self.planned_epochs,
                "last_epoch": self.epoch_offset + self.last_epoch,
                "ended_early": ended_early,
                "schedule_fitted": ended_early and self.schedule is not None}


class RunBackup(keras.callbacks.BackupAndRestore):
    """Keras's ``BackupAndRestore`` for one ``fit`` stage of a run, kept after the stage ends.

    At the end of every epoch it saves the weights, the optimizer state (learning-rate schedule
    position included) and the epoch number to ``backup_dir``; at the start of ``fit`` it
    restores them, so a resumed ``fit`` continues after the last finished epoch. Unlike the
    plain callback the backup of a *finished* stage is kept (``delete_checkpoint=False``):
    when a run is resumed, that stage's ``fit`` restores its final weights and runs no epoch,
    and the next stage resumes where it stopped. The trainer deletes the backups once the run
    completes. ``double_checkpoint`` keeps the previous state for a backup cut off mid-write.

    Args:
        backup_dir: this stage's folder (``RUN_DIR/backup/stage-N``).
        epoch_offset: epochs of the stages before this one.
        on_stage_end: called with ``epoch_offset + epochs of this fit`` when ``fit`` ends.
    """

    def __init__(self, backup_dir, epoch_offset: int = 0,
                 on_stage_end: Callable[[int], None] | None = None):
        super().__init__(backup_dir=os.fspath(backup_dir), save_freq="epoch",
                         double_checkpoint=True, delete_checkpoint=False)
        self.epoch_offset = int(epoch_offset)
        self.on_stage_end = on_stage_end
        self.restored_epoch = 0

    def on_train_begin(self, logs=None):
        # Keras keeps ``_initial_epoch`` on the model after a restore; a model fitted again in a
        # later stage must not inherit it.
        self.model._initial_epoch = None
        super().on_train_begin(logs)
        self.restored_epoch = int(self.model._initial_epoch or 0)

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None
        if self.on_stage_end is not None:
            self.on_stage_end(self.epoch_offset + int((self.params or {}).get("epochs") or 0))
