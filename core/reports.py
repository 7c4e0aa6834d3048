"""What a run report shows, computed from a run folder (no Streamlit; ``ui/report.py`` renders it).

* ``config_diff(config)``: the settings where a run differs from its preset / family defaults.
* ``evaluation_view(results)``: which split the confusion matrix, per-class accuracy and the
  misclassified gallery use (test when the run has one, else validation), and their data.
* ``load_split_images(config, split, file_names)``: the images behind the gallery's file names,
  loaded with the same data selection as the trainer.
* ``read_log_tail``, ``run_duration_seconds``, ``downloadable_files``: the small facts of a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from core import runs

# Keys that pick the defaults a run is compared against (the rest of the config is the diff).
DEFAULTS_KEYS = ("model", "preset", "strategy")
# Keys that are bookkeeping, not settings a student chose (generator_version: which
# synthetic-signs generator drew the data, recorded by the LeNet family).
IGNORED_KEYS = ("sweep_id", "source_run_dir", "generator_version")
LOG_TAIL_CHARACTERS = 4000
# Files of a run folder offered for download, in this order, with their MIME types.
DOWNLOAD_FILES = (
    (runs.MODEL_FILE, "application/octet-stream"),
    (runs.CONFIG_FILE, "application/json"),
    (runs.RESULTS_FILE, "application/json"),
    (runs.METRICS_FILE, "text/csv"),
    (runs.CLASS_NAMES_FILE, "application/json"),
    (runs.LOG_FILE, "text/plain"),
)
TEST_SPLIT = "test"
VAL_SPLIT = "val"
SPLIT_TITLES = {TEST_SPLIT: "test", VAL_SPLIT: "validation"}


@dataclass
class ConfigChange:
    """One setting where a run differs from its defaults.

    Attributes:
        setting: dotted name (``preprocessing.color`` for nested keys).
        value: the run's value.
        default: the preset's / family's value (None when the defaults have no such key).
    """

    setting: str
    value: object
    default: object


@dataclass
class EvaluationView:
    """The split the report's matrix, bars and gallery describe.

    Attributes:
        split: ``"test"`` or ``"val"`` (None when ``results.json`` holds neither).
        title: ``"test"`` or ``"validation"`` for headings.
        confusion_matrix: ``matrix[true][predicted]`` counts, or None.
        per_class_accuracy: one accuracy per class (None for a class without images), or None.
        misclassified: ``{index, file_name, true, predicted, confidence}`` items, most confident
            first (may be empty; None when the run stored no mistakes for this split).
        class_names: names of the class ids.
    """

    split: str | None
    title: str
    confusion_matrix: list | None = None
    per_class_accuracy: list | None = None
    misclassified: list | None = None
    class_names: list = field(default_factory=list)

    def class_name(self, class_id: int) -> str:
        """The class's name, or its id as text when the run stored no name for it."""
        class_id = int(class_id)
        return self.class_names[class_id] if 0 <= class_id < len(self.class_names) else str(class_id)


def _flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def reference_defaults(config: dict) -> tuple[dict | None, str]:
    """The resolved defaults a run is compared against, and a label for them.

    Args:
        config: a run's ``config.json``.

    Returns:
        ``(defaults, label)``: the family's ``resolve_config`` of only the run's ``model``,
        ``preset`` and ``strategy`` (e.g. ``"lenet5 preset seed"``), or ``(None, reason)`` when
        the family cannot resolve them (an unknown model, or defaults that need more keys).
    """
    from core.training import families

    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, received {type(config).__name__}")
    picked = {key: config[key] for key in DEFAULTS_KEYS if config.get(key) not in (None, "")}
    label = " ".join(f"{key} {value}" if key != "model" else str(value) for key, value in picked.items())
    try:
        return families.family_module(str(config.get("model"))).resolve_config(picked), label
    except (ValueError, KeyError, TypeError) as error:
        return None, f"no defaults for {label or 'this run'} ({error})"


def implied_settings(config: dict) -> dict:
    """Settings a run trained with that its ``config.json`` does not name.

    A family that adds a config key lists, in ``IMPLIED_WHEN_ABSENT``, the value that runs made
    before the key existed trained with (``lenet_family``'s ``weight_decay``: 0). Without it, an
    older plus run would look like the plus preset of today, which decays its weights.

    Args:
        config: a run's ``config.json``.

    Returns:
        ``{key: value}`` for the family's implied keys that ``config`` lacks (empty for an
        unknown model).
    """
    from core.training import families

    try:
        implied = getattr(families.family_module(str(config.get("model"))), "IMPLIED_WHEN_ABSENT", {})
    except ValueError:
        return {}
    return {key: value for key, value in implied.items() if key not in config}


def config_diff(config: dict, defaults: dict | None = None) -> list[ConfigChange]:
    """The settings where ``config`` differs from ``defaults``, nested keys dotted, sorted.

    Args:
        config: a run's ``config.json``.
        defaults: what to compare against; default ``reference_defaults(config)``. When no
            defaults can be resolved every setting is listed (with ``default`` None).

    Returns:
        One ``ConfigChange`` per differing setting (keys only in the defaults are left out:
        they are defaults by definition, unless ``implied_settings`` gives the value an older
        run trained with).
    """
    if defaults is None:
        defaults, _ = reference_defaults(config)
    flat_config = _flatten({**implied_settings(config), **config})
    flat_defaults = _flatten(defaults or {})
    changes = []
    for setting in sorted(flat_config):
        if setting.split(".")[0] in IGNORED_KEYS:
            continue
        value = flat_config[setting]
        default = flat_defaults.get(setting)
        if setting not in flat_defaults or value != default:
            changes.append(ConfigChange(setting, value, default))
    return changes


def evaluation_view(results: dict | None, class_names=None) -> EvaluationView:
    """Picks the split that a run's report describes: test when scored, else validation.

    Args:
        results: a run's ``results.json`` (None or {} for a run that was never scored).
        class_names: names to use when ``results`` holds none (``class_names.json``).

    Returns:
        An ``EvaluationView``; its ``split`` is None when neither split was scored.
    """
    results = results or {}
    names = list(results.get("class_names") or class_names or [])
    if results.get("confusion_matrix") is not None or results.get("misclassified") is not None:
        return EvaluationView(TEST_SPLIT, SPLIT_TITLES[TEST_SPLIT], results.get("confusion_matrix"),
                              results.get("per_class_accuracy"), results.get("misclassified"), names)
    if results.get("val_confusion_matrix") is not None or results.get("val_misclassified") is not None:
        return EvaluationView(VAL_SPLIT, SPLIT_TITLES[VAL_SPLIT], results.get("val_confusion_matrix"),
                              results.get("val_per_class_accuracy"), results.get("val_misclassified"),
                              names)
    return EvaluationView(None, "", class_names=names)


def split_load_arguments(config: dict, split: str) -> dict:
    """Keyword arguments of ``core.datasets.load`` that select the same images as the trainer.

    Args:
        config: a resolved run config.
        split: ``"val"`` or ``"test"``.

    Returns:
        ``{"seed", "classes"?, "train_size"?, "valid_size"?}`` as ``load_prepared_splits`` uses
        them (sizes only for the validation split; the test split is subsampled afterwards,
        which only drops file names).
    """
    if split not in SPLIT_TITLES:
        raise ValueError(f"split must be one of {sorted(SPLIT_TITLES)}, received {split!r}")
    arguments = {"seed": int(config.get("seed") or 0)}
    if config.get("classes") is not None:
        arguments["classes"] = config["classes"]
    if split == VAL_SPLIT:
        arguments.update({key: config[key] for key in ("train_size", "valid_size")
                          if config.get(key) is not None})
    return arguments


def image_size_of(config: dict) -> int:
    """The side in pixels the run's images were loaded at (before a ``center_crop``)."""
    spec = config.get("preprocessing") or {}
    size = int(spec.get("image_size") or config.get("image_size") or 32)
    crop = spec.get("center_crop", 1.0)
    if isinstance(crop, (int, float)) and not isinstance(crop, bool) and 0 < crop < 1:
        from core.datasets.preprocess import source_image_size

        return source_image_size({"image_size": size, "center_crop": float(crop)})
    return size


def load_split_images(config: dict, split: str, file_names) -> list:
    """The original (RGB, unpreprocessed) images of a run's split with these file names.

    Args:
        config: the run's config (``dataset``, ``seed``, ``classes``, sizes, image size).
        split: ``"val"`` or ``"test"``.
        file_names: names from ``results.json``'s misclassified list.

    Returns:
        One uint8 (S, S, 3) array per name, in order; None where a name is not in the split.

    Raises:
        ValueError, OSError: when the dataset or split is not available on this machine.
    """
    from core import datasets

    loaded = datasets.load(str(config.get("dataset")), split, image_size_of(config),
                           **split_load_arguments(config, split))
    position = {name: index for index, name in enumerate(loaded.file_names)}
    return [loaded.images[position[name]] if name in position else None for name in file_names]


def read_log_tail(run_dir: str | os.PathLike, characters: int = LOG_TAIL_CHARACTERS) -> str | None:
    """The last ``characters`` of a run's ``train.log`` (reads only the end), or None without one."""
    path = Path(run_dir) / runs.LOG_FILE
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 4 * characters))  # up to 4 bytes per UTF-8 character
        text = handle.read().decode("utf-8", errors="replace")
    return text[-characters:]


def time_budget_note(results: dict | None) -> str | None:
    """One sentence on a run's time budget (``results.json["time_budget"]``), or None.

    Args:
        results: a run's results (None or without ``time_budget`` for a run without a budget).

    Returns:
        E.g. "Time budget 850 s: training ended after epoch 18 of 20 to finish in time; its
        cosine learning-rate schedule was shortened to end there." or, when every epoch fitted,
        "Time budget 850 s: all 20 epochs fitted."
    """
    budget = (results or {}).get("time_budget")
    if not isinstance(budget, dict) or budget.get("planned_epochs") is None:
        return None
    seconds = f"Time budget {float(budget.get('budget_seconds') or 0):.0f} s"
    if not budget.get("ended_early"):
        return f"{seconds}: all {budget['planned_epochs']} epochs fitted."
    text = (f"{seconds}: training ended after epoch {budget.get('last_epoch')} of "
            f"{budget['planned_epochs']} to finish in time")
    if budget.get("schedule_fitted"):
        text += "; its cosine learning-rate schedule was shortened to end there"
    return text + "."


def run_duration_seconds(status: dict) -> float | None:
    """Seconds from ``started_at`` to ``ended_at`` (or the last heartbeat while running)."""
    started = runs.parse_time(status.get("started_at"))
    ended = runs.parse_time(status.get("ended_at")) or runs.parse_time(status.get("heartbeat"))
    if started is None or ended is None:
        return None
    return max(0.0, (ended - started).total_seconds())


def downloadable_files(run_dir: str | os.PathLike) -> list[tuple[str, Path, int, str]]:
    """The run's files worth downloading that exist: ``(name, path, size_bytes, mime)``."""
    run_dir = Path(run_dir)
    found = []
    for name, mime in DOWNLOAD_FILES:
        path = run_dir / name
        if path.is_file():
            found.append((name, path, path.stat().st_size, mime))
    return found
