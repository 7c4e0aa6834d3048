"""Fit one resolved config into one run folder: the code both the worker and the CLI run.

``run_training(run_dir)`` reads ``config.json``, marks the run RUNNING (pid, host, device,
started_at, heartbeat), keeps a heartbeat thread writing ``status.json`` every few seconds,
dispatches to ``family_module(config["model"]).train(context)`` and ends the run COMPLETED,
CANCELLED (everything written so far is kept) or FAILED (error text in ``status.json``, traceback
in ``train.log``).

The ``RunContext`` handed to a family is the whole training API a family needs:

* ``context.run_dir``, ``context.run_id``, ``context.config`` (resolved dict), ``context.logger``
  (writes ``train.log``; also stderr for the CLI), ``context.device`` (e.g. ``"CPU"``);
* ``context.scope()``: build and compile the model inside it (a ``MirroredStrategy`` scope when
  ``config["distribute"] == "mirrored"``, else a no-op); ``context.num_replicas``;
  ``context.for_replicas(split)`` trims the train/val arrays given to ``fit`` to a multiple of
  the replicas (a Keras 3.15 limitation) and ``context.check_batch_size(batch_size)``;
* ``context.callbacks(total_epochs, epoch_offset=0, model_to_save=None)``: the Keras callbacks
  to pass to ``model.fit(..., verbose=0)``: metrics.csv rows, progress in status.json, cancel
  after the current batch, best ``model.keras`` by val_accuracy, and the CLI's progress bar.
  For a second stage pass ``epoch_offset=context.epochs_done()`` so epochs keep counting;
  ``model_to_save`` is the model written to ``model.keras`` (e.g. the full composed model when
  a bottleneck head is what ``fit`` trains);
* ``context.cancelled`` / ``context.raise_if_cancelled()``: after each ``fit`` a family returns
  (or calls ``raise_if_cancelled``) when the user cancelled; the run then ends CANCELLED;
* ``context.callbacks(..., time_budget_seconds=B, schedule=s, steps_per_epoch=n)`` also ends
  the ``fit`` early enough to finish within B seconds of the run's start (``TimeBudget``),
  shortening a resizable schedule ``s`` to match; ``results.json["time_budget"]`` says where
  training ended;
* ``context.set_class_names(names)``: writes ``class_names.json`` (call it before ``fit``);
* ``context.load_best_model()``: loads ``model.keras`` (safe mode) to score the best epoch;
* ``context.write_results(model, test, val, num_train_images=...)``: ``results.json`` with the
  keys of docs/ARCHITECTURE.md (test fields null when ``test`` is None);
* ``prepare_split(split, preprocessing)`` (module function): a ``PreparedSplit`` whose images are
  what the model sees (``core.datasets.preprocess.apply_preprocessing`` applied once).

A minimal family::

    def train(context):
        config = context.config
        train = prepare_split(datasets.load(config["dataset"], "train"), config["preprocessing"])
        val = prepare_split(datasets.load(config["dataset"], "val"), config["preprocessing"])
        context.set_class_names(train.class_names)
        with context.scope():
            model = build_model(...)
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
        model.fit(train.images, train.labels, validation_data=(val.images, val.labels),
                  epochs=config["epochs"], verbose=0,
                  callbacks=context.callbacks(config["epochs"]))
        if context.cancelled:
            return
        context.write_results(context.load_best_model(), None, val,
                              num_train_images=len(train.labels))
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import environment, runs

MAX_MISCLASSIFIED = 64
PREDICT_BATCH_SIZE = 256
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
DISTRIBUTE_OPTIONS = ("none", "mirrored")
# A log record with this attribute set is a run warning: stored in results.json["warnings"] and
# status.json["warning"], and shown on the pages (``logger.warning(text, extra={FLAG: True})``).
RUN_WARNING_FLAG = "run_warning"
BACKUP_FOLDER = "backup"


class TrainingCancelled(Exception):
    """Raised by ``RunContext.raise_if_cancelled``; the trainer ends the run CANCELLED."""


@dataclass
class PreparedSplit:
    """A dataset split whose images are exactly what the model takes (preprocessing applied).

    Attributes:
        images: uint8 array (N, S, S, C).
        labels: int64 array (N,).
        file_names: one name per image (for the misclassified gallery).
        class_names: names of the label ids.
        name: dataset name; split: "train", "val" or "test".
    """

    images: np.ndarray
    labels: np.ndarray
    file_names: list = field(default_factory=list)
    class_names: list = field(default_factory=list)
    name: str = ""
    split: str = ""

    def __len__(self) -> int:
        return int(len(self.labels))



def _subset(split, limit: int | None, seed: int):
    """A seeded random subset of at most ``limit`` images of a split (order kept)."""
    if limit is None or len(split.labels) <= limit:
        return split
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(split.labels), size=limit, replace=False))
    split.images = split.images[keep]
    split.labels = split.labels[keep]
    split.file_names = [split.file_names[index] for index in keep]
    return split


def load_prepared_splits(config: dict, logger=None):
    """Loads a resolved config's train, val and (where available) test splits, preprocessed.

    Every model family calls this, so all runs select data the same way: ``classes`` and
    ``train_size``/``valid_size`` (Dogs vs Cats subsample; caps elsewhere) apply to train and
    val, ``labels_per_class`` to train only, ``classes`` and ``max_test_images`` to test.

    Args:
        config: a resolved run config (``dataset``, ``seed``, ``preprocessing`` ...).
        logger: the run's logger. A dataset without a test split is noted at INFO level; a
            test split that exists but fails to load is logged as a run warning (see
            ``RunContext.warnings``: the run then ends completed with that warning). Without a
            logger that failure is raised.

    Returns:
        ``(train, val, test)`` as ``PreparedSplit`` (test is None without a test split).
    """
    from core import datasets
    from core.datasets import registry

    from core.datasets.preprocess import source_image_size

    name = config["dataset"]
    size = source_image_size(config["preprocessing"])
    seed = config["seed"]
    selection = {"classes": config["classes"]} if config.get("classes") is not None else {}
    sizes = {key: config[key] for key in ("train_size", "valid_size") if config.get(key) is not None}
    train = datasets.load(name, "train", size, seed=seed,
                          labels_per_class=config.get("labels_per_class"), **selection, **sizes)
    val = datasets.load(name, "val", size, seed=seed, **selection, **sizes)
    test = None
    if "test" in registry.get_info(name).splits:
        try:
            test = _subset(datasets.load(name, "test", size, seed=seed, **selection),
                           config.get("max_test_images"), seed)
        except (ValueError, OSError) as error:  # the dataset has a test split, but it failed
            message = (f"the test split of {name} could not be loaded, so the run has no test "
                       f"scores: {type(error).__name__}: {error}")
            if logger is None:
                raise
            logger.warning(message, extra={RUN_WARNING_FLAG: True})
    elif logger is not None:
        logger.info("%s has no test split: scores come from the validation split", name)
    spec = config["preprocessing"]
    return (prepare_split(train, spec), prepare_split(val, spec),
            prepare_split(test, spec) if test is not None else None)

def prepare_split(split, preprocessing: dict | None) -> PreparedSplit:
    """Applies a run's preprocessing spec once to a ``DatasetSplit``.

    Args:
        split: a ``core.datasets.DatasetSplit`` (``.images`` uint8 RGB, ``.labels``, ...).
        preprocessing: the run's ``config["preprocessing"]`` dict; None keeps images unchanged.

    Returns:
        A ``PreparedSplit``.
    """
    images = split.images
    if preprocessing is not None:
        from core.datasets import preprocess

        images = preprocess.apply_preprocessing(images, preprocessing)
    return PreparedSplit(
        images=np.asarray(images),
        labels=np.asarray(split.labels, dtype="int64"),
        file_names=list(getattr(split, "file_names", []) or []),
        class_names=list(getattr(split, "class_names", []) or []),
        name=str(getattr(split, "name", "")),
        split=str(getattr(split, "split", "")),
    )


def make_logger(run_dir: Path, console: bool = False) -> logging.Logger:
    """A logger writing ``train.log`` in the run folder (and stderr when ``console``)."""
    logger = logging.getLogger(f"tllab.run.{Path(run_dir).name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    file_handler = logging.FileHandler(Path(run_dir) / runs.LOG_FILE, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(file_handler)
    if console:
        stream_handler = logging.StreamHandler(sys.stderr)
        stream_handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(stream_handler)
    return logger


def _close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def make_strategy(config: dict):
    """Returns the ``tf.distribute`` strategy a config asks for, or None.

    ``config["distribute"] == "mirrored"`` gives ``tf.distribute.MirroredStrategy`` over every
    visible GPU (or every logical CPU device when there is no GPU). Only the TensorFlow backend
    supports it.

    Raises:
        ValueError: for an unknown option, or "mirrored" with a non-TensorFlow Keras backend.
    """
    option = str(config.get("distribute") or "none")
    if option not in DISTRIBUTE_OPTIONS:
        raise ValueError(f"distribute must be one of {DISTRIBUTE_OPTIONS}, received {option!r}")
    if option == "none":
        return None
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            f"distribute='mirrored' needs the TensorFlow Keras backend, received {backend!r}; "
            "set KERAS_BACKEND=tensorflow or use distribute='none'"
        )
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([device.name for device in gpus])
    cpus = tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in cpus])


def describe_device(strategy=None) -> str:
    """Human name of what trains: ``"CPU"``, a GPU name, or ``"mirrored: 2 × NVIDIA H100"``."""
    gpus = environment.framework_gpus()
    names = [str(gpu.get("name")) for gpu in gpus]
    if strategy is not None:
        replicas = int(strategy.num_replicas_in_sync)
        kind = names[0] if names else "CPU device"
        return f"mirrored: {replicas} × {kind}"
    if not names:
        return "CPU"
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} more visible)"


class _RunWarningCollector(logging.Handler):
    """Collects the messages of log records flagged ``RUN_WARNING_FLAG`` into a list."""

    def __init__(self, messages: list):
        super().__init__(level=logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, RUN_WARNING_FLAG, False):
            message = record.getMessage()
            if message not in self.messages:
                self.messages.append(message)


class RunContext:
    """What a model family's ``train(context)`` gets; see the module docstring for the API.

    Args:
        run_dir: the run folder.
        config: the resolved config (``config.json``).
        logger: writes ``train.log``.
        device: human name of the device, stored in ``status.json``.
        strategy: a ``tf.distribute`` strategy or None.
        console: draw a progress bar on stderr (the CLI).
        extra_callbacks: Keras callbacks appended to every ``callbacks()`` list (benchmarks).
        resuming: the run continues an interrupted one (``core.jobs.resume``): every ``fit``
            restores its stage's backup, and ``epochs_done()`` counts the stages passed in this
            process rather than the rows of ``metrics.csv``.
    """

    def __init__(self, run_dir, config: dict, logger: logging.Logger | None = None, *,
                 device: str = "CPU", strategy=None, console: bool = False,
                 extra_callbacks: list | None = None, resuming: bool = False):
        self.run_dir = Path(run_dir)
        self.extra_callbacks = list(extra_callbacks or [])
        self.config = dict(config)
        self.logger = logger or make_logger(self.run_dir)
        self.device = device
        self.strategy = strategy
        self.console = console
        self.resuming = bool(resuming)
        self.warnings: list[str] = []
        self._warning_collector = _RunWarningCollector(self.warnings)
        self.logger.addHandler(self._warning_collector)
        self._cancelled = False
        self._fit_calls = 0
        self._frozen_heaps = []  # the FrozenHeap callbacks handed out, released by detach()
        self._stage_end_epoch = 0
        self.started = time.monotonic()  # what a time budget counts from
        self.time_budget = None  # the TimeBudget callback of the latest fit that has one

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    # --- cancellation -------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once the user asked to cancel (seen by a callback or the marker file)."""
        if not self._cancelled and runs.cancel_requested(self.run_dir):
            self._cancelled = True
        return self._cancelled

    def mark_cancelled(self) -> None:
        """Records that training stopped because of a cancel request."""
        if not self._cancelled:
            self.logger.info("Cancel requested: stopping after the current batch")
        self._cancelled = True

    def raise_if_cancelled(self) -> None:
        """Raises ``TrainingCancelled`` when a cancel was requested (e.g. between stages)."""
        if self.cancelled:
            raise TrainingCancelled("cancelled by the user")

    # --- warnings -------------------------------------------------------------------------
    def warn(self, message: str) -> None:
        """Records a problem that does not fail the run: it ends completed with this warning
        (``results.json["warnings"]``, ``status.json["warning"]``, shown on the pages)."""
        self.logger.warning(str(message), extra={RUN_WARNING_FLAG: True})

    def detach(self) -> None:
        """Ends the run's hold on the process: removes the warning collector from the logger and
        unfreezes a heap a ``fit`` froze but could not release because it raised."""
        self.logger.removeHandler(self._warning_collector)
        for heap in self._frozen_heaps:
            heap.release()
        self._frozen_heaps.clear()

    def _remember_heap(self, heap):
        self._frozen_heaps.append(heap)
        return heap

    # --- distribution -------------------------------------------------------------------
    def scope(self):
        """Context manager to build and compile models in (the strategy scope, or a no-op)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1

    def for_replicas(self, split: PreparedSplit) -> PreparedSplit:
        """Trims a split to a multiple of ``num_replicas`` for ``fit`` under a strategy.

        Keras 3.15 with ``MirroredStrategy`` fails on a last batch that does not split evenly
        across replicas ("Inputs to operation AddN ... must have the same size"), so at most
        ``num_replicas - 1`` images are dropped (and logged). A no-op without a strategy.
        """
        replicas = self.num_replicas
        extra = len(split) % replicas
        if replicas == 1 or extra == 0:
            return split
        keep = len(split) - extra
        self.logger.info("Dropping %d %s image(s) so batches split evenly over %d replicas",
                         extra, split.split or "", replicas)
        return PreparedSplit(images=split.images[:keep], labels=split.labels[:keep],
                             file_names=list(split.file_names[:keep]),
                             class_names=split.class_names, name=split.name, split=split.split)

    def check_batch_size(self, batch_size: int) -> None:
        """Raises ``ValueError`` when a global batch does not split evenly over the replicas."""
        if int(batch_size) % self.num_replicas:
            raise ValueError(f"batch_size must be a multiple of the {self.num_replicas} replicas of "
                             f"distribute='mirrored', received {batch_size}")

    # --- run folder helpers ---------------------------------------------------------------
    def epochs_done(self) -> int:
        """Epochs of the stages before the next ``fit`` (the ``epoch_offset`` of a next stage).

        Normally the rows of ``metrics.csv``. A resumed run has rows of later stages too, so
        it counts the epochs of the stages its ``fit`` calls have passed in this process.
        """
        if self.resuming:
            return int(self._stage_end_epoch)
        return int(len(runs.read_metrics(self.run_dir)))

    @property
    def backup_dir(self) -> Path:
        """``RUN_DIR/backup``: the ``BackupAndRestore`` state of each stage (``stage-N``)."""
        return self.run_dir / BACKUP_FOLDER

    def _stage_ended(self, end_epoch: int) -> None:
        self._stage_end_epoch = max(self._stage_end_epoch, int(end_epoch))

    def best_val_accuracy(self) -> float | None:
        """Best ``val_accuracy`` in ``metrics.csv`` so far, or None."""
        metrics = runs.read_metrics(self.run_dir)
        if not len(metrics) or not metrics["val_accuracy"].notna().any():
            return None
        return float(metrics["val_accuracy"].max())

    def set_class_names(self, class_names) -> None:
        """Writes ``class_names.json`` (index = model output unit)."""
        runs.write_class_names(self.run_dir, list(class_names))

    @property
    def model_path(self) -> Path:
        return self.run_dir / runs.MODEL_FILE

    def callbacks(self, total_epochs: int, epoch_offset: int = 0, model_to_save=None, *,
                  time_budget_seconds: float = 0, schedule=None,
                  steps_per_epoch: int | None = None) -> list:
        """The Keras callbacks for one ``model.fit`` call of this run.

        Args:
            total_epochs: epochs of the whole run, all stages together (for progress and ETA).
            epoch_offset: epochs done by earlier stages (``context.epochs_done()``).
            model_to_save: model written to ``model.keras`` on improvement; default the fitted one.
            time_budget_seconds: > 0 adds a ``callbacks.TimeBudget``: this ``fit`` ends early
                enough that its last epoch ends within this many seconds of the run's start
                (``context.started``, before the data was loaded); ``write_results`` then
                stores its ``summary()`` as ``time_budget``. 0 = no limit.
            schedule: the learning-rate schedule the budget may shorten (``set_decay_steps``),
                or None.
            steps_per_epoch: optimizer steps per epoch (with ``schedule``).

        Returns:
            A list for ``model.fit(callbacks=...)``; pass ``verbose=0`` to ``fit``.
        """
        from core.training import callbacks as run_callbacks

        if int(total_epochs) < 1:
            raise ValueError(f"total_epochs must be a positive integer, received {total_epochs!r}")
        stage = self._fit_calls
        self._fit_calls += 1
        items = [
            run_callbacks.CancelOnRequest(self.run_dir, on_cancel=self.mark_cancelled),
            run_callbacks.MetricsLogger(self.run_dir, epoch_offset=epoch_offset,
                                        skip_written=self.resuming),
            run_callbacks.BestModelSaver(self.model_path, model_to_save=model_to_save,
                                         initial_best=self.best_val_accuracy()),
            run_callbacks.ProgressReporter(self.run_dir, total_epochs, epoch_offset=epoch_offset),
            self._remember_heap(run_callbacks.FrozenHeap()),
        ]
        if self.console:
            items.append(run_callbacks.ConsoleProgress(total_epochs, epoch_offset=epoch_offset))
        if time_budget_seconds:
            self.time_budget = run_callbacks.TimeBudget(
                time_budget_seconds, self.started, schedule=schedule,
                steps_per_epoch=steps_per_epoch, epoch_offset=epoch_offset, logger=self.logger,
                progress=[item for item in items if hasattr(item, "total_epochs")])
            items.append(self.time_budget)
        # Last of the run's own callbacks: an epoch is backed up only after its metrics row and
        # model.keras are written, so a resume never loses a row (a duplicate is skipped).
        items.append(run_callbacks.RunBackup(self.backup_dir / f"stage-{stage}",
                                             epoch_offset=epoch_offset,
                                             on_stage_end=self._stage_ended))
        return items + self.extra_callbacks

    def load_best_model(self):
        """Loads ``model.keras`` (the best epoch so far) with ``safe_mode=True``."""
        import keras

        from core.models import register_custom_layers

        register_custom_layers()

        if not self.model_path.exists():
            raise runs.RunError(f"{runs.MODEL_FILE} is missing in {self.run_dir}: no epoch finished")
        return keras.saving.load_model(self.model_path, compile=False, safe_mode=True)

    def write_results(self, model, test=None, val=None, *, num_train_images: int | None = None,
                      class_names=None, batch_size: int = PREDICT_BATCH_SIZE,
                      extra: dict | None = None) -> dict:
        """Scores ``model`` and writes ``results.json``.

        Args:
            model: the model to score (normally ``context.load_best_model()``).
            test: a ``PreparedSplit`` (or anything with ``.images``, ``.labels``,
                ``.file_names``) of the test split, or None when the dataset has none.
            val: the validation split, used for ``num_val_images`` and, when ``metrics.csv``
                holds no val_accuracy, for ``best_val_accuracy``; its confusion matrix,
                per-class accuracy and most confident mistakes are stored as
                ``val_confusion_matrix``, ``val_per_class_accuracy`` and ``val_misclassified``
                (the run report's gallery uses them when there is no test split).
            num_train_images: images the model was trained on.
            class_names: names of the output units; default those of ``test``/``val``.
            batch_size: prediction batch size.
            extra: more keys to store (family-specific facts).

        Returns:
            The results dict as written.
        """
        names = list(class_names or getattr(test, "class_names", None)
                     or getattr(val, "class_names", None) or runs.read_class_names(self.run_dir) or [])
        trainable, non_trainable = count_params(model)
        results: dict[str, Any] = {
            "test_accuracy": None, "test_loss": None, "num_test_images": None,
            "per_class_accuracy": None, "confusion_matrix": None, "misclassified": None,
            "class_names": names,
            "best_val_accuracy": self.best_val_accuracy(),
            "num_val_images": len(val.labels) if val is not None else None,
            "num_train_images": int(num_train_images) if num_train_images is not None else None,
            "trainable_params": trainable, "non_trainable_params": non_trainable,
            "warnings": list(self.warnings),
        }
        if self.time_budget is not None:
            results["time_budget"] = self.time_budget.summary()
        num_classes = len(names) or int(model.outputs[0].shape[-1])
        if val is not None and len(val.labels):
            probabilities = predict_probabilities(model, val.images, batch_size)
            scores = score_predictions(probabilities, val.labels, num_classes,
                                       file_names=getattr(val, "file_names", None))
            results["val_confusion_matrix"] = scores["confusion_matrix"]
            results["val_per_class_accuracy"] = scores["per_class_accuracy"]
            results["val_misclassified"] = scores["misclassified"]
            if results["best_val_accuracy"] is None:
                results["best_val_accuracy"] = scores["accuracy"]
        if test is not None and len(test.labels):
            probabilities = predict_probabilities(model, test.images, batch_size)
            scores = score_predictions(probabilities, test.labels, num_classes,
                                       file_names=getattr(test, "file_names", None))
            results.update(
                test_accuracy=scores["accuracy"], test_loss=scores["loss"],
                num_test_images=int(len(test.labels)),
                per_class_accuracy=scores["per_class_accuracy"],
                confusion_matrix=scores["confusion_matrix"], misclassified=scores["misclassified"],
            )
            self.logger.info("Test accuracy %.4f on %d images", scores["accuracy"], len(test.labels))
        if extra:
            results.update(extra)
        runs.write_results(self.run_dir, results)
        return results


def count_params(model) -> tuple[int, int]:
    """Returns (trainable, non-trainable) parameter counts of a Keras model."""
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    non_trainable = sum(int(np.prod(weight.shape)) for weight in model.non_trainable_weights)
    return trainable, non_trainable


def predict_probabilities(model, images, batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
    """Runs ``model.predict`` in batches; returns (N, num_classes) float probabilities."""
    return np.asarray(model.predict(np.asarray(images, dtype="float32"), batch_size=batch_size,
                                    verbose=0), dtype="float64")


def score_predictions(probabilities, labels, num_classes: int, file_names=None) -> dict:
    """Accuracy, mean cross-entropy, confusion matrix, per-class accuracy and top mistakes.

    Args:
        probabilities: (N, num_classes) probabilities.
        labels: (N,) true class ids.
        num_classes: size of the confusion matrix.
        file_names: optional names for the misclassified list.

    Returns:
        A dict with ``accuracy``, ``loss``, ``confusion_matrix`` (rows = true, columns =
        predicted), ``per_class_accuracy`` (None for a class with no images) and
        ``misclassified`` (at most ``MAX_MISCLASSIFIED``, most confident mistakes first).
    """
    probabilities = np.asarray(probabilities, dtype="float64")
    labels = np.asarray(labels, dtype="int64")
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(
            f"probabilities must be (N, num_classes) with N = {len(labels)} labels, received shape "
            f"{probabilities.shape}"
        )
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(labels)), predicted]
    true_probability = probabilities[np.arange(len(labels)), np.clip(labels, 0, probabilities.shape[1] - 1)]
    matrix = np.zeros((num_classes, num_classes), dtype="int64")
    np.add.at(matrix, (labels, predicted), 1)
    totals = matrix.sum(axis=1)
    per_class = [float(matrix[index, index] / totals[index]) if totals[index] else None
                 for index in range(num_classes)]
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:MAX_MISCLASSIFIED]
    names = list(file_names) if file_names is not None else []
    misclassified = [
        {"index": int(index), "file_name": names[index] if index < len(names) else str(index),
         "true": int(labels[index]), "predicted": int(predicted[index]),
         "confidence": float(confidence[index])}
        for index in wrong
    ]
    return {
        "accuracy": float((predicted == labels).mean()) if len(labels) else None,
        "loss": float(-np.log(np.clip(true_probability, 1e-7, 1.0)).mean()) if len(labels) else None,
        "confusion_matrix": matrix.tolist(),
        "per_class_accuracy": per_class,
        "misclassified": misclassified,
    }


def _hostname() -> str:
    return socket.gethostname()


def run_training(run_dir, *, console: bool = False, heartbeat: bool = True,
                 extra_callbacks: list | None = None) -> str:
    """Runs a run folder's config to the end; never raises for a training error.

    Args:
        run_dir: a run folder created by ``core.runs.create_run`` with a resolved config.
        console: log to stderr too and draw a progress bar (the CLI).
        heartbeat: keep a heartbeat thread writing ``status.json``; the worker passes False
            because it already runs one from before it waited for its slot.
        extra_callbacks: Keras callbacks added after the run's own (e.g. a benchmark's timer).

    Returns:
        The final state: ``completed``, ``cancelled`` or ``failed`` (or the state found when the
        run was no longer QUEUED/RUNNING, e.g. cancelled while queued).
    """
    from core import heartbeat as heartbeat_module
    from core.processes import process_start_ticks

    run_dir = Path(run_dir).resolve()
    logger = make_logger(run_dir, console=console)
    beat = heartbeat_module.Heartbeat(run_dir).start() if heartbeat else None
    final_state, error, warning = runs.FAILED, None, None
    try:
        now = runs.utc_now()
        started = runs.update_status(
            run_dir, only_if_state=(runs.QUEUED, runs.RUNNING), state=runs.RUNNING,
            pid=os.getpid(), host=_hostname(), heartbeat=heartbeat_module.heartbeat_now(),
            pid_start_ticks=process_start_ticks(os.getpid()),
        )
        if started is None:
            state = runs.read_status(run_dir)["state"]
            logger.info("Not starting: the run is %s", state)
            return state
        if not started.get("started_at"):
            runs.update_status(run_dir, started_at=now)
        config = runs.read_config(run_dir)
        logger.info("Run %s: model %s, dataset %s", run_dir.name, config.get("model"),
                    config.get("dataset"))
        if runs.cancel_requested(run_dir):
            raise TrainingCancelled("cancelled before training started")
        from core.training.families import family_module

        # Before TensorFlow's first operation: a batch in parts runs one part per core.
        threads = environment.share_cpu_threads(int(config.get("batch_branches") or 1))
        if threads is not None:
            logger.info("CPU threads per operation: %d (batch in %d parts)", threads,
                        config["batch_branches"])
        environment.disable_tf_data_autotune()  # no idle pauses between epochs (see there)
        family = family_module(str(config.get("model")))
        strategy = make_strategy(config)
        device = describe_device(strategy)
        runs.update_status(run_dir, device=device)
        logger.info("Device: %s", device)
        resuming = bool(started.get("resumed_at"))
        if resuming:
            logger.info("Resuming after epoch %d (resume %s)", len(runs.read_metrics(run_dir)),
                        started.get("resume_count"))
        context = RunContext(run_dir, config, logger, device=device, strategy=strategy,
                             console=console, extra_callbacks=extra_callbacks, resuming=resuming)
        try:
            family.train(context)
        finally:
            context.detach()
        final_state = runs.CANCELLED if context.cancelled else runs.COMPLETED
        if context.warnings:
            warning = "; ".join(context.warnings)
            _store_warnings(run_dir, context.warnings)
        if final_state == runs.COMPLETED:
            remove_backups(run_dir)
    except TrainingCancelled as cancelled:
        final_state, error = runs.CANCELLED, None
        logger.info("Cancelled: %s", cancelled)
    except KeyboardInterrupt:
        final_state, error = runs.CANCELLED, "interrupted (Ctrl-C or SIGINT)"
        logger.info("Interrupted")
    except Exception as failure:  # noqa: BLE001 - every training error becomes a FAILED run
        final_state, error = runs.FAILED, f"{type(failure).__name__}: {failure}"
        logger.error("Training failed: %s\n%s", error, traceback.format_exc())
    finally:
        if beat is not None:
            beat.stop()
    finish_run(run_dir, final_state, error, warning=warning)
    logger.info("Run ended %s%s", final_state, f" with a warning: {warning}" if warning else "")
    _close_logger(logger)
    return final_state


def _store_warnings(run_dir, warnings: list[str]) -> None:
    """Makes sure ``results.json["warnings"]`` holds the run's warnings (when it exists)."""
    results = runs.read_results(run_dir)
    if results is not None and results.get("warnings") != list(warnings):
        results["warnings"] = list(warnings)
        runs.write_results(run_dir, results)


def remove_backups(run_dir) -> None:
    """Deletes ``RUN_DIR/backup`` (the resume state), once a run has completed."""
    import shutil

    shutil.rmtree(Path(run_dir) / BACKUP_FOLDER, ignore_errors=True)


def finish_run(run_dir, state: str, error: str | None = None, *,
               warning: str | None = None) -> dict | None:
    """Writes the terminal state, unless the run already ended (e.g. cancelled while queued).

    A run that a watcher marked FAILED because its heartbeat went stale (a suspended laptop)
    but whose worker then finished is corrected to the worker's own final state.

    Args:
        run_dir: the run folder.
        state: ``completed``, ``cancelled`` or ``failed``.
        error: why it failed (``status.json["error"]``).
        warning: a problem that did not fail the run (``status.json["warning"]``), e.g. a test
            split that could not be loaded: the run is "completed with a warning".
    """
    status = runs.read_status(run_dir)
    allowed = (runs.QUEUED, runs.RUNNING)
    if status.get("state") == runs.FAILED and status.get("failure_detected_by") == "watcher":
        allowed = allowed + (runs.FAILED,)
    fields = {"state": state, "ended_at": runs.utc_now(), "error": error, "warning": warning}
    if state != runs.FAILED:
        fields["failure_detected_by"] = None
    return runs.update_status(run_dir, only_if_state=allowed, **fields)

