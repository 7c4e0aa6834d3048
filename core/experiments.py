"""Transfer experiments: ``python -m core.experiments few-shot ...`` and ``... sweep ...``.

**Few-shot GTSRB** (a small-scale reproduction of Yosinski et al. 2014, "How transferable are
features in deep neural networks?"): a LeNet-sized network is trained on a *source* task, then
its layers are copied into a network for a *target* task that has only ``k`` labelled images per
class; a second network with the same architecture, data and epochs starts from random weights.

* ``--source synthetic-signs``: source = the app's synthetic signs (all 43 classes, drawn, not
  photographed); target = real GTSRB, all 43 classes.
* ``--source gtsrb-half``: source = real GTSRB classes 0-20; target = GTSRB classes 21-42
  (relabelled 0-21), so source and target share no class.

The transfer arm copies the first ``n`` weighted layers (default for ``gtsrb-half``: every
convolution, i.e. the source's feature extractor, the dense head starting random; for
``synthetic-signs``, whose source has the target's 43 classes, every hidden layer: the
convolutions and the hidden dense layers, only the classifier starting random) and fine-tunes them (the paper's AnB+):
for the first third of the epochs the copied layers stay frozen while the new head learns, then
everything trains at 0.3x the learning rate. ``--freeze`` keeps them frozen throughout (AnB).
The source run is reused when a finished, good-enough one trained with the same ``--seed``
exists, else trained first.

Command line (stdout's LAST TWO lines are the scratch run folder, then the transfer run folder)::

    python -m core.experiments few-shot --source synthetic-signs --labels-per-class 10
    python -m core.experiments few-shot --source gtsrb-half --labels-per-class 10 --runs-dir DIR
    python -m core.experiments few-shot --source synthetic-signs --labels-per-class 0

``--labels-per-class 0`` (synthetic-signs only) is **synthetic-only** training: the source run
itself, trained on drawn signs and no real label, is scored on real GTSRB images (the official
test images installed, and the validation split); the figures are stored in the source run's
``results.json`` (``real_test_accuracy``, ``real_val_accuracy``) and its folder is printed.
``--self-train`` adds unsupervised domain adaptation, still with 0 real labels: a
``self-training`` run (``core.training.lenet_transfer_family``) starts from the source network,
re-estimates its batch-norm statistics on GTSRB's training images and trains on the drawn signs
plus those real images it labels itself with confidence >= 0.9 (by default each image's nearest
class centroid in the network's feature space; ``--pseudo-labels classifier`` takes the
classifier's most probable class instead); GTSRB's labels are read only to score it, like the
source, and its folder is printed after the source's.
It runs ``SELF_TRAINING_ROUNDS`` (8) such runs in a chain (``--self-train-rounds N``): each
round starts from the previous round's network and labels the real images afresh with it.

    python -m core.experiments few-shot --source synthetic-signs --labels-per-class 0 --self-train
    python -m core.experiments few-shot --source synthetic-signs --labels-per-class 0 --self-train --self-train-rounds 1
    python -m core.experiments few-shot --source synthetic-signs --labels-per-class 0 --self-train --pseudo-labels classifier
    python -m core.experiments sweep --model mobilenetv2 --dataset dogs-vs-cats --per-class 10,30,100,300,750

``sweep`` trains a scratch and a transfer twin for each number of labelled images per class,
under one budget (same epochs, image size and seed), queued as jobs; it waits for them and
prints their run folders, scratch then transfer for each size. The Compare page plots them.

Everything runs in the foreground through the same code path as the UI's jobs
(``core.jobs.create_job`` + ``core.worker.run``); the page's button uses ``submit_few_shot``.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

from core import environment, paths, runs, transferability
from core.training.lenet_transfer_family import SELF_TRAINING
from core.training.pseudo_labels import DEFAULT_PSEUDO_LABEL_METHOD, PSEUDO_LABEL_METHODS

FEW_SHOT = "few-shot"
SOURCES = ("synthetic-signs", "gtsrb-half")
LABELS_PER_CLASS_CHOICES = (10, 30, 100)
GTSRB_HALF_SOURCE_CLASSES = tuple(range(21))
GTSRB_HALF_TARGET_CLASSES = tuple(range(21, 43))
LENET_TRANSFER_MODEL = "lenet5-transfer"
SOURCE_PRESET = "plus"
# Source training: enough epochs for a strong feature extractor (the reuse threshold below).
SOURCE_EPOCHS = {"synthetic-signs": 15, "gtsrb-half": 12}
SOURCE_MIN_VAL_ACCURACY = 0.85
# Target arms: the same budget for scratch and transfer.
TARGET_EPOCHS = 60
TARGET_BATCH_SIZE = 32
TARGET_MAX_VAL_IMAGES = 2000  # a cap on all-43-class validation (applied before ``classes``)
# Self-training (0 real labels): a few epochs on the drawn signs plus pseudo-labelled real images.
SELF_TRAINING_EPOCHS = 4
# Chained self-training runs (about 3.5 minutes each here). With centroid pseudo-labels, seed 1
# on the validation split (4,290 real images) went 82.4, 88.1, 90.9, 92.3, 92.8, 94.6, 96.1,
# 96.1, 96.3 % over rounds 1-9 (the real photos kept grew from 25,245 in round 3 to 31,156 of
# 34,919 in round 9), flattening after round 7; seeds 0 and 2 reached 92.9 and 95.5 % after
# round 8, against 91.6 and 90.7 % after round 3 (docs/RESULTS_LOG.md, round 30).
SELF_TRAINING_ROUNDS = 8
SELF_TRAINING_ROLE = "self-training"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def source_config(source: str, *, epochs: int | None = None, seed: int = 0) -> dict:
    """The config of the source run for ``source`` (a ``lenet5-transfer`` scratch run).

    Args:
        source: ``"synthetic-signs"`` or ``"gtsrb-half"``.
        epochs: source epochs (default ``SOURCE_EPOCHS[source]``).
        seed: training seed.
    """
    _check_source(source)
    config = {"model": LENET_TRANSFER_MODEL, "strategy": "scratch", "preset": SOURCE_PRESET,
              "epochs": int(epochs or SOURCE_EPOCHS[source]), "seed": int(seed),
              "experiment": FEW_SHOT, "role": "source", "source": source,
              "valid_size": TARGET_MAX_VAL_IMAGES}
    if source == "synthetic-signs":
        config["dataset"] = "synthetic-signs"
    else:
        config.update(dataset="gtsrb", classes=list(GTSRB_HALF_SOURCE_CLASSES))
    return config


def target_classes(source: str) -> list[int] | None:
    """GTSRB class ids of the target task (None = all 43)."""
    _check_source(source)
    return None if source == "synthetic-signs" else list(GTSRB_HALF_TARGET_CLASSES)


def default_transfer_layers(source: str, source_run) -> int | None:
    """n copied by default: every hidden layer (all but the classifier) for ``synthetic-signs``,
    whose source learnt the target's own 43 classes; None (every convolution) otherwise or when
    the source run's config cannot be read.

    Measured (k = 10, GTSRB val): copying the hidden dense layer as well raised transfer from
    83.7 % to 88.6 % (scratch 70.8 %).
    """
    if source != "synthetic-signs":
        return None
    try:
        config = runs.read_config(source_run)
    except (OSError, ValueError):
        return None
    convolutions, dense = config.get("conv_filters"), config.get("dense_units")
    if not isinstance(convolutions, list) or not isinstance(dense, list):
        return None
    return len(convolutions) + len(dense)


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, received {source!r}")


def _check_labels_per_class(labels_per_class) -> int:
    if isinstance(labels_per_class, bool) or not isinstance(labels_per_class, int) or labels_per_class < 1:
        raise ValueError(f"labels_per_class must be a positive int, received {labels_per_class!r}")
    return labels_per_class


def target_configs(source: str, labels_per_class: int, source_run: str | Path, *,
                   epochs: int = TARGET_EPOCHS, transfer_layers: int | None = None,
                   freeze: bool = False, seed: int = 0, experiment_id: str | None = None) -> tuple[dict, dict]:
    """The scratch and transfer configs of one few-shot experiment (same data, same budget).

    Args:
        source: ``"synthetic-signs"`` or ``"gtsrb-half"``.
        labels_per_class: k, labelled target images per class.
        source_run: the source run folder (its architecture and preprocessing are used by both
            arms; only the transfer arm copies its weights).
        epochs: epochs of each arm.
        transfer_layers: n, weighted layers copied (None = ``default_transfer_layers``).
        freeze: keep the copied layers frozen (AnB) instead of fine-tuning them (AnB+).
        seed: seed of the k-shot sample and of training.
        experiment_id: groups the two runs (default: a new id).

    Returns:
        ``(scratch_config, transfer_config)``.
    """
    _check_source(source)
    _check_labels_per_class(labels_per_class)
    experiment_id = experiment_id or f"{FEW_SHOT}-{source}-k{labels_per_class}-{secrets.token_hex(3)}"
    common = {"model": LENET_TRANSFER_MODEL, "dataset": "gtsrb", "classes": target_classes(source),
              "labels_per_class": labels_per_class, "source_run": str(source_run),
              "epochs": int(epochs), "batch_size": TARGET_BATCH_SIZE, "seed": int(seed),
              "valid_size": TARGET_MAX_VAL_IMAGES if target_classes(source) is None else None,
              "experiment": FEW_SHOT,
              "experiment_id": experiment_id, "source": source}
    if transfer_layers is None:
        transfer_layers = default_transfer_layers(source, source_run)
    scratch = {**common, "strategy": "scratch", "role": "scratch"}
    transfer = {**common, "strategy": "feature-extraction" if freeze else "fine-tune",
                "role": "transfer", "transfer_layers": transfer_layers}
    return scratch, transfer


def _matches_source(summary: runs.RunSummary, source: str, seed: int | None = None) -> bool:
    config = summary.config
    wanted = source_config(source)
    if seed is not None and config.get("seed") != seed:
        return False
    if config.get("model") not in (LENET_TRANSFER_MODEL, "lenet5"):
        return False
    if config.get("model") == LENET_TRANSFER_MODEL and config.get("strategy") != "scratch":
        return False
    if config.get("dataset") != wanted["dataset"]:
        return False
    if source == "synthetic-signs":
        from core.datasets.synthetic_signs import GENERATOR_VERSION

        if config.get("generator_version") != GENERATOR_VERSION:
            return False  # trained on images an older generator drew
    classes = config.get("classes")
    return (list(classes) if classes is not None else None) == wanted.get("classes")


def find_source_run(source: str, runs_root=None, min_val_accuracy: float = SOURCE_MIN_VAL_ACCURACY,
                    include_active: bool = False, seed: int | None = None) -> Path | None:
    """Finds the best finished run that can serve as the source network.

    Suitable: a completed LeNet run (``lenet5`` or ``lenet5-transfer`` scratch) on the source
    data (synthetic signs drawn by the current generator version, its config's
    ``generator_version``; or GTSRB restricted to classes 0-20) with a ``model.keras`` and a
    best validation accuracy of at least ``min_val_accuracy``.

    Args:
        source: ``"synthetic-signs"`` or ``"gtsrb-half"``.
        runs_root: the runs root (default ``core.paths.runs_dir()``).
        min_val_accuracy: reuse threshold (a one-epoch smoke run is not a good source).
        include_active: also accept a queued or running source run (the page queues targets
            behind it).
        seed: accept only a run trained with this seed (None: any seed). The CLI passes its
            ``--seed``, so a repeat with another seed trains its own source network.

    Returns:
        The run folder, or None.
    """
    _check_source(source)
    best = None
    for summary in runs.list_runs(runs_root):
        if summary.broken or not _matches_source(summary, source, seed):
            continue
        if summary.state == runs.COMPLETED:
            if not (summary.path / runs.MODEL_FILE).exists():
                continue
            if (summary.best_val_accuracy or 0.0) < min_val_accuracy:
                continue
            score = (1, summary.best_val_accuracy or 0.0)
        elif include_active and summary.state in (runs.QUEUED, runs.RUNNING):
            score = (0, 0.0)
        else:
            continue
        if best is None or score > best[0]:
            best = (score, summary.path)
    return best[1] if best else None


def submit_few_shot(source: str, labels_per_class: int, runs_root=None, **options) -> dict:
    """Queues a few-shot experiment as jobs (the page's button).

    The source job is queued first when no suitable run exists; the target runs wait for it.

    Returns:
        ``{"source": run id, "source_reused": bool, "scratch": run id, "transfer": run id}``.
    """
    from core import jobs

    source_dir = find_source_run(source, runs_root, include_active=True, seed=options.get("seed"))
    reused = source_dir is not None
    if source_dir is None:
        source_dir = runs.run_path(jobs.submit(source_config(source, seed=options.get("seed", 0)),
                                               runs_root), runs_root)
    scratch, transfer = target_configs(source, labels_per_class, source_dir, **options)
    # Both copy the source's architecture: the queue holds them until the source completes.
    scratch_id = jobs.submit({**scratch, jobs.DEPENDS_ON_KEY: [source_dir.name]}, runs_root)
    transfer_id = jobs.submit({**transfer, jobs.DEPENDS_ON_KEY: [source_dir.name]}, runs_root)
    return {"source": source_dir.name, "source_reused": reused, "scratch": scratch_id,
            "transfer": transfer_id}


def _run_foreground(config: dict, runs_root, log) -> Path:
    from core import jobs, worker

    run_dir = jobs.create_job(config, runs_root)
    log(f"Run folder: {run_dir}")
    state = worker.run(run_dir, console=True)
    if state != runs.COMPLETED:
        status = runs.read_status(run_dir)
        raise RuntimeError(f"run {run_dir.name} ended {state}: {status.get('error')}")
    return run_dir


def run_few_shot(source: str, labels_per_class: int, runs_root=None, *,
                 source_epochs: int | None = None, log=None, **options) -> tuple[Path, Path, Path]:
    """Runs a whole few-shot experiment in the foreground.

    Returns:
        ``(source_dir, scratch_dir, transfer_dir)``.
    """
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    _check_source(source)
    _check_labels_per_class(labels_per_class)
    source_dir = _source_run(source, runs_root, source_epochs, options.get("seed", 0), log)
    scratch, transfer = target_configs(source, labels_per_class, source_dir, **options)
    log(f"Scratch arm: {labels_per_class} labelled images per class, {scratch['epochs']} epochs")
    scratch_dir = _run_foreground(scratch, runs_root, log)
    log(f"Transfer arm ({transfer['strategy']}): same data and epochs, layers copied from "
        f"{source_dir.name}")
    transfer_dir = _run_foreground(transfer, runs_root, log)
    return source_dir, scratch_dir, transfer_dir


def _source_run(source: str, runs_root, source_epochs, seed: int, log) -> Path:
    source_dir = find_source_run(source, runs_root, seed=seed)
    if source_dir is not None:
        log(f"Reusing source run {source_dir.name} (seed {seed})")
        return source_dir
    log(f"No finished {source} source run with seed {seed} and val accuracy >= "
        f"{SOURCE_MIN_VAL_ACCURACY:.0%}: training one")
    return _run_foreground(source_config(source, epochs=source_epochs, seed=seed), runs_root, log)


REAL_SPLITS = ("test", "val")


def score_on_real(run_dir, splits=REAL_SPLITS, runs_root=None) -> dict:
    """Accuracy of a synthetic-signs run on real GTSRB images (all 43 classes).

    The synthetic classes are GTSRB's ids in order, so the model's outputs are GTSRB labels.
    Splits that are not installed are skipped. ``runs_root`` is the run's runs root (default
    ``core.paths.runs_dir()``).

    Returns:
        ``{"real_<split>_accuracy": float, "real_<split>_images": int}`` per split scored.
    """
    import numpy as np

    from core import datasets
    from core.datasets.preprocess import source_image_size
    from core.predictor import Predictor

    predictor = Predictor.from_run(run_dir, runs_root)
    scores = {}
    for split in splits:
        try:
            data = datasets.load("gtsrb", split, source_image_size(predictor.preprocessing))
        except datasets.DatasetError:
            continue
        predicted = predictor.predict(data.images).argmax(axis=1)
        scores[f"real_{split}_accuracy"] = float(np.mean(predicted == data.labels))
        scores[f"real_{split}_images"] = int(len(data.labels))
    return scores


def run_synthetic_only(runs_root=None, *, source_epochs: int | None = None, seed: int = 0,
                       log=None) -> tuple[Path, dict]:
    """Synthetic-only training (0 real labels): the synthetic-signs source run, scored on real
    GTSRB images; the scores are added to its ``results.json``.

    Returns:
        ``(source_dir, scores)`` (see ``score_on_real``).
    """
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    source_dir = _source_run("synthetic-signs", runs_root, source_epochs, seed, log)
    scores = _record_real_scores(source_dir, runs_root)
    if not scores:
        raise RuntimeError("GTSRB is not installed: nothing real to score the synthetic-only model on")
    return source_dir, scores


def _record_real_scores(run_dir, runs_root) -> dict:
    """``score_on_real`` for ``run_dir``, merged into its ``results.json``; returns the scores."""
    scores = score_on_real(run_dir, runs_root=runs_root)
    if scores:
        runs.write_results(run_dir, {**(runs.read_results(run_dir) or {}), **scores})
    return scores


def self_training_config(source_dir, *, epochs: int = SELF_TRAINING_EPOCHS, seed: int = 0,
                         pseudo_labels: str = DEFAULT_PSEUDO_LABEL_METHOD) -> dict:
    """The config of a ``self-training`` run adapting a synthetic-signs source to real GTSRB.

    Args:
        source_dir: the finished synthetic-signs source run.
        epochs: epochs on drawn signs plus pseudo-labelled real images.
        seed: training seed.
        pseudo_labels: how the real images are labelled, one of
            ``core.training.pseudo_labels.PSEUDO_LABEL_METHODS``.
    """
    return {"model": LENET_TRANSFER_MODEL, "strategy": SELF_TRAINING, "preset": SOURCE_PRESET,
            "dataset": "synthetic-signs", "unlabelled_dataset": "gtsrb",
            "pseudo_labels": pseudo_labels,
            "source_run": str(source_dir), "epochs": int(epochs), "seed": int(seed),
            "experiment": FEW_SHOT, "role": SELF_TRAINING_ROLE, "source": "synthetic-signs",
            "valid_size": TARGET_MAX_VAL_IMAGES}


def _check_rounds(rounds) -> int:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"self-training rounds must be a positive int, received {rounds!r}")
    return rounds


def run_self_training(runs_root=None, *, source_epochs: int | None = None, seed: int = 0,
                      epochs: int = SELF_TRAINING_EPOCHS, rounds: int = SELF_TRAINING_ROUNDS,
                      pseudo_labels: str = DEFAULT_PSEUDO_LABEL_METHOD,
                      log=None) -> tuple[Path, dict, list[tuple[Path, dict]]]:
    """Synthetic-only training, then self-training on unlabelled real GTSRB (0 real labels).

    Args:
        runs_root: runs root (default ``core.paths.runs_dir()``).
        source_epochs: epochs of the synthetic-signs source run when one must be trained.
        seed: training seed of every run.
        epochs: epochs of each self-training round.
        rounds: self-training runs in a chain; each starts from the previous one's network
            (the first from the source's) and pseudo-labels the real images afresh.
        pseudo_labels: how each round labels the real images ("centroids" or "classifier").
        log: called with progress lines (default: printed to stderr).

    Returns:
        ``(source_dir, source_scores, [(round_dir, round_scores), ...])``, one pair per round in
        order; every run's real scores are added to its ``results.json`` (``score_on_real``).

    Raises:
        ValueError: when ``rounds`` is not a positive int.
    """
    rounds = _check_rounds(rounds)
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    source_dir, source_scores = run_synthetic_only(runs_root, source_epochs=source_epochs, seed=seed,
                                                   log=log)
    adapted = []
    previous_dir = source_dir
    for round_number in range(1, rounds + 1):
        log(f"Self-training round {round_number} of {rounds} from {previous_dir.name} on "
            "unlabelled GTSRB training images")
        previous_dir = _run_foreground(self_training_config(previous_dir, epochs=epochs, seed=seed,
                                                            pseudo_labels=pseudo_labels),
                                       runs_root, log)
        adapted.append((previous_dir, _record_real_scores(previous_dir, runs_root)))
    return source_dir, source_scores, adapted


def self_training_round(summary, summaries_by_id: dict) -> int:
    """Which round of a self-training chain a run is: 1 when its source is not self-training.

    Args:
        summary: the run's ``core.runs.RunSummary``.
        summaries_by_id: every known summary by run id (sources outside it end the chain).
    """
    round_number = 1
    seen = {summary.run_id}
    source = summary.config.get("source_run")
    while source:
        parent = summaries_by_id.get(Path(str(source)).name)
        if parent is None or parent.config.get("strategy") != SELF_TRAINING or parent.run_id in seen:
            break
        seen.add(parent.run_id)
        round_number += 1
        source = parent.config.get("source_run")
    return round_number


def synthetic_only_results(summaries) -> list[dict]:
    """One row per synthetic-signs source run scored on real GTSRB (``run_synthetic_only``).

    Returns:
        Dicts with ``run_id``, ``method`` (drawn signs only, or self-training on unlabelled real
        images, with its round after the first), ``pseudo_labels`` (a self-training run's
        method, else None), ``synthetic_val_accuracy`` (on drawn signs), ``real_test_accuracy``,
        ``real_test_images``, ``real_val_accuracy`` and ``real_val_images`` (None when absent).
    """
    rows = []
    summaries = list(summaries)
    by_id = {summary.run_id: summary for summary in summaries}
    for summary in summaries:
        results = summary.results or {}
        if summary.broken or summary.config.get("dataset") != "synthetic-signs":
            continue
        if results.get("real_test_accuracy") is None and results.get("real_val_accuracy") is None:
            continue
        method, pseudo_labels = "drawn signs only", None
        if summary.config.get("strategy") == SELF_TRAINING:
            round_number = self_training_round(summary, by_id)
            method = "self-training on unlabelled real images" + (
                f" (round {round_number})" if round_number > 1 else "")
            # Runs from before the setting existed labelled by the classifier.
            pseudo_labels = summary.config.get("pseudo_labels", "classifier")
        rows.append({"run_id": summary.run_id, "method": method, "pseudo_labels": pseudo_labels,
                     "synthetic_val_accuracy": summary.best_val_accuracy,
                     **{f"real_{split}_{what}": results.get(f"real_{split}_{what}")
                        for split in REAL_SPLITS for what in ("accuracy", "images")}})
    return rows


def experiment_summary(scratch_dir, transfer_dir) -> dict:
    """Test (or validation) accuracy of both arms and the gain in points."""
    def accuracy(run_dir):
        results = runs.read_results(run_dir) or {}
        value = results.get("test_accuracy")
        return (value, "test") if value is not None else (results.get("best_val_accuracy"), "val")

    scratch, split = accuracy(scratch_dir)
    transfer, _ = accuracy(transfer_dir)
    gain = None if scratch is None or transfer is None else 100.0 * (transfer - scratch)
    return {"scratch_accuracy": scratch, "transfer_accuracy": transfer, "gain_points": gain,
            "split": split}


def few_shot_results(summaries) -> list[dict]:
    """One row per few-shot experiment: source, k, arms' accuracy and the gain in points.

    Args:
        summaries: ``core.runs.RunSummary`` objects (e.g. ``core.runs.list_runs()``).

    Returns:
        Dicts with ``experiment_id``, ``source``, ``labels_per_class``, ``strategy``,
        ``scratch_run``, ``transfer_run``, ``scratch_accuracy``, ``transfer_accuracy``,
        ``gain_points`` and ``split`` (test, or val when no test accuracy exists yet).
    """
    experiments: dict[str, dict] = {}
    for summary in summaries:
        config = summary.config
        if summary.broken or config.get("experiment") != FEW_SHOT or config.get("role") in (
                "source", SELF_TRAINING_ROLE):
            continue
        row = experiments.setdefault(str(config.get("experiment_id")), {
            "experiment_id": config.get("experiment_id"), "source": config.get("source"),
            "labels_per_class": config.get("labels_per_class"), "strategy": None,
            "scratch_run": None, "transfer_run": None, "scratch_accuracy": None,
            "transfer_accuracy": None, "gain_points": None, "split": "test"})
        accuracy = summary.test_accuracy if summary.test_accuracy is not None else summary.best_val_accuracy
        if summary.test_accuracy is None:
            row["split"] = "val"
        arm = "scratch" if config.get("strategy") == "scratch" else "transfer"
        row[f"{arm}_run"] = summary.run_id
        row[f"{arm}_accuracy"] = accuracy
        if arm == "transfer":
            row["strategy"] = config.get("strategy")
    for row in experiments.values():
        if row["scratch_accuracy"] is not None and row["transfer_accuracy"] is not None:
            row["gain_points"] = 100.0 * (row["transfer_accuracy"] - row["scratch_accuracy"])
    return list(experiments.values())


SWEEP_SIZES = (100, 250, 500, 1000, 2000)
SWEEP = "sweep"
SWEEP_KEYS = ("train_size", "labels_per_class")
SWEEP_PER_CLASS = (10, 30, 100, 300, 750)
# One budget for both arms of the CLI sweep: scratch MobileNet at 224 px would take hours on a CPU.
SWEEP_IMAGE_SIZE = 96
SWEEP_EPOCHS = 20
SWEEP_POLL_SECONDS = 2.0


def sweep_configs(config: dict, sizes, sweep_id: str | None = None, key: str = "train_size") -> list[dict]:
    """Scratch + transfer twins for each training-set size, under one budget.

    Args:
        config: a backbone transfer config (``vgg16``/``mobilenetv2``/``mobilenet``); its strategy
            is the transfer arm (``feature-extraction`` when it is ``scratch``).
        sizes: training-set sizes: images (``train_size``) or images per class
            (``labels_per_class``).
        sweep_id: groups the runs (default: a new id).
        key: ``"train_size"`` or ``"labels_per_class"``.

    Returns:
        Two configs per size, scratch first; every one has the same epochs, image size and
        ``sweep_id``.
    """
    if key not in SWEEP_KEYS:
        raise ValueError(f"key must be one of {SWEEP_KEYS}, received {key!r}")
    sizes = sorted({int(size) for size in sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"sizes must be one or more positive ints, received {sizes!r}")
    sweep_id = sweep_id or f"sweep-{secrets.token_hex(3)}"
    strategy = config.get("strategy") or "feature-extraction"
    if strategy == "scratch":
        strategy = "feature-extraction"
    configs = []
    for size in sizes:
        common = {**config, key: size, "sweep_id": sweep_id}
        configs.append({**common, "strategy": "scratch", "weights": "none"})
        configs.append({**common, "strategy": strategy})
    return configs


def submit_sweep(config: dict, sizes, runs_root=None, key: str = "train_size") -> list[str]:
    """Validates every sweep config first, then queues them all; returns the run ids."""
    from core import jobs

    configs = sweep_configs(config, sizes, key=key)
    for candidate in configs:
        jobs.resolve_config(candidate, runs_root)  # fail before queueing anything
    return [jobs.submit(candidate, runs_root) for candidate in configs]


def wait_for_runs(run_ids: list[str], runs_root=None, log=None,
                  poll_seconds: float = SWEEP_POLL_SECONDS) -> dict[str, str]:
    """Waits until every run ended; returns ``{run_id: final state}``."""
    from core import jobs

    states: dict[str, str] = {}
    while len(states) < len(run_ids):
        for run_id in run_ids:
            if run_id in states:
                continue
            state = jobs.status(run_id, runs_root).get("state")
            if state in runs.TERMINAL_STATES:
                states[run_id] = state
                if log is not None:
                    log(f"{run_id}: {state} ({len(states)}/{len(run_ids)})")
        if len(states) < len(run_ids):
            time.sleep(poll_seconds)
    return states


def _sweep_command(arguments) -> int:
    per_class = [int(text) for text in arguments.per_class.split(",") if text.strip()]
    config = {"model": arguments.model, "dataset": arguments.dataset, "weights": arguments.weights,
              "strategy": arguments.strategy, "image_size": arguments.image_size,
              "epochs": arguments.epochs, "seed": arguments.seed}
    run_ids = submit_sweep(config, per_class, arguments.runs_dir, key="labels_per_class")
    root = paths.runs_dir(arguments.runs_dir)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    log(f"Queued {len(run_ids)} runs (scratch and {arguments.strategy} for k = {per_class} per class); "
        "they train one after another")
    if arguments.no_wait:
        states = {}
    else:
        states = wait_for_runs(run_ids, arguments.runs_dir, log=log)
    for run_id in run_ids:
        sys.stdout.write(f"{root / run_id}\n")
    sys.stdout.flush()
    return EXIT_OK if all(state == runs.COMPLETED for state in states.values()) else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.experiments",
                                     description="Offline transfer-learning experiments.")
    commands = parser.add_subparsers(dest="command", required=True)
    few_shot = commands.add_parser(FEW_SHOT, help="scratch vs transfer with k labels per class")
    few_shot.add_argument("--source", choices=SOURCES, required=True)
    few_shot.add_argument("--labels-per-class", type=int, required=True,
                          help="k labelled GTSRB training images per class (e.g. 10, 30, 100); "
                               "0 with synthetic-signs: synthetic-only, the source run scored on "
                               "real GTSRB")
    few_shot.add_argument("--runs-dir", help="runs root (default $TLLAB_RUNS_DIR or runs/)")
    few_shot.add_argument("--epochs", type=int, default=TARGET_EPOCHS,
                          help=f"epochs of each target arm (default {TARGET_EPOCHS})")
    few_shot.add_argument("--source-epochs", type=int,
                          help="epochs of the source run when one must be trained")
    few_shot.add_argument("--transfer-layers", type=int,
                          help="n: weighted (conv/dense) layers copied from the source "
                               "(default: every hidden layer for synthetic-signs, every "
                               "convolution for gtsrb-half)")
    few_shot.add_argument("--freeze", action="store_true",
                          help="keep copied layers frozen (AnB) instead of fine-tuning (AnB+)")
    few_shot.add_argument("--self-train", action="store_true",
                          help="with --labels-per-class 0: then adapt the source to real GTSRB "
                               "without labels (batch-norm statistics and pseudo-labels)")
    few_shot.add_argument("--self-train-rounds", type=int,
                          help="with --self-train: self-training runs in a chain, each starting "
                               f"from the previous one (default {SELF_TRAINING_ROUNDS})")
    few_shot.add_argument("--pseudo-labels", choices=PSEUDO_LABEL_METHODS,
                          help="with --self-train: label the real images by their nearest class "
                               "centroid in feature space (centroids, the default) or by the "
                               "classifier's most probable class")
    few_shot.add_argument("--seed", type=int, default=0)
    sweep = commands.add_parser(SWEEP, help="data efficiency: scratch and transfer twins per size")
    sweep.add_argument("--model", choices=("vgg16", "mobilenetv2", "mobilenet"), required=True)
    sweep.add_argument("--dataset", default="dogs-vs-cats")
    sweep.add_argument("--per-class", default=",".join(map(str, SWEEP_PER_CLASS)),
                       help="labelled training images per class, comma-separated")
    sweep.add_argument("--strategy", choices=("feature-extraction", "fine-tune"),
                       default="feature-extraction", help="the transfer arm")
    sweep.add_argument("--weights", default="imagenet", help="the transfer arm's weights")
    sweep.add_argument("--image-size", type=int, default=SWEEP_IMAGE_SIZE,
                       help=f"both arms (default {SWEEP_IMAGE_SIZE}: scratch at 224 px is slow on a CPU)")
    sweep.add_argument("--epochs", type=int, default=SWEEP_EPOCHS, help="both arms' budget")
    sweep.add_argument("--seed", type=int, default=0)
    sweep.add_argument("--runs-dir", help="runs root (default $TLLAB_RUNS_DIR or runs/)")
    sweep.add_argument("--no-wait", action="store_true", help="queue the runs and return")
    transferability.add_parser(commands)
    return parser


def _synthetic_only_command(arguments, started: float) -> int:
    if arguments.source != "synthetic-signs":
        print("error: --labels-per-class 0 (synthetic-only) needs --source synthetic-signs",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        if arguments.self_train:
            rounds = (SELF_TRAINING_ROUNDS if arguments.self_train_rounds is None
                      else arguments.self_train_rounds)
            source_dir, scores, adapted = run_self_training(
                arguments.runs_dir, source_epochs=arguments.source_epochs, seed=arguments.seed,
                rounds=rounds, pseudo_labels=arguments.pseudo_labels or DEFAULT_PSEUDO_LABEL_METHOD)
        else:
            source_dir, scores = run_synthetic_only(arguments.runs_dir, source_epochs=arguments.source_epochs,
                                                    seed=arguments.seed)
            adapted = []
    except ValueError as error:  # run_self_training checks its rounds before anything trains
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    elapsed = f" in {time.monotonic() - started:.0f} s"
    print(f"synthetic-only (0 real labels) accuracy on real GTSRB: {_real_figures(scores)}"
          f"{'' if arguments.self_train else elapsed}", file=sys.stderr)
    sys.stdout.write(f"{source_dir}\n")
    for round_number, (round_dir, round_scores) in enumerate(adapted, start=1):
        print(f"self-training round {round_number} (0 real labels) accuracy on real GTSRB: "
              f"{_real_figures(round_scores)}", file=sys.stderr)
        sys.stdout.write(f"{round_dir}\n")
    if adapted:
        print(f"all steps{elapsed}", file=sys.stderr)
    sys.stdout.flush()
    return EXIT_OK


def _real_figures(scores: dict) -> str:
    return ", ".join(f"{split} {scores[f'real_{split}_accuracy']:.4f} on "
                     f"{scores[f'real_{split}_images']} images"
                     for split in REAL_SPLITS if f"real_{split}_accuracy" in scores)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    environment.prefer_onednn_kernels()  # before anything imports TensorFlow
    arguments = build_parser().parse_args(argv)
    if arguments.command == transferability.COMMAND:
        return transferability.main(arguments)
    if arguments.command == SWEEP:
        try:
            return _sweep_command(arguments)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
    started = time.monotonic()
    if arguments.pseudo_labels is not None and not arguments.self_train:
        print("error: --pseudo-labels needs --self-train", file=sys.stderr)
        return EXIT_USAGE
    if arguments.self_train_rounds is not None and not arguments.self_train:
        print("error: --self-train-rounds needs --self-train", file=sys.stderr)
        return EXIT_USAGE
    if arguments.labels_per_class == 0:
        return _synthetic_only_command(arguments, started)
    if arguments.self_train:
        print("error: --self-train needs --labels-per-class 0 (it uses no real label)", file=sys.stderr)
        return EXIT_USAGE
    try:
        _check_labels_per_class(arguments.labels_per_class)
        _, scratch_dir, transfer_dir = run_few_shot(
            arguments.source, arguments.labels_per_class, arguments.runs_dir,
            source_epochs=arguments.source_epochs, epochs=arguments.epochs,
            transfer_layers=arguments.transfer_layers, freeze=arguments.freeze, seed=arguments.seed)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    summary = experiment_summary(scratch_dir, transfer_dir)
    if summary["gain_points"] is not None:
        print(f"{summary['split']} accuracy: scratch {summary['scratch_accuracy']:.4f}, transfer "
              f"{summary['transfer_accuracy']:.4f} ({summary['gain_points']:+.1f} points) in "
              f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    sys.stdout.write(f"{scratch_dir}\n{transfer_dir}\n")
    sys.stdout.flush()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
