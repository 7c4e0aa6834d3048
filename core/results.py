"""GTSRB preset results: what runs on this machine measured, and the published anchors.

* ``preset_runs(summaries, preset)``: the completed GTSRB runs of a LeNet preset trained with
  the preset's own settings (only the seed may differ), newest first.
* ``seed_spread(summaries, preset)``: per-epoch min / mean / max validation accuracy over the
  newest default run of each seed, plus each seed's test figure (the Train page draws it as a
  band under the study's curve).
* ``preset_rows(summaries)``: one row per preset for the Home page and the README: the figure
  measured here (with its split and image count), training time, the command that reproduces it,
  and the published anchor beside it.

Nothing here is a stored result: every figure comes from run folders. The anchors are the
published numbers the issue compares against, with their sources.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from core import reports, runs

MODEL = "lenet5"
DATASET = "gtsrb"
SEED_KEY = "seed"
# Presets shown on the Home page, in this order, with the command that trains one run.
PRESET_COMMANDS = {
    "seed": "python -m core.train --model lenet5 --preset seed --set seed=N   # N = 0, 1, 2",
    "plus": "python -m core.train --model lenet5 --preset plus",
    "committee": "python -m core.train --model lenet5 --preset committee",
    "classic": "python -m core.train --model lenet5 --preset classic",
}
# Published figures on the official GTSRB test set (12,630 images) to set each preset beside.
ANCHORS = {
    "seed": "seminar study: 95.5% test (96.8% val)",
    "plus": "Sermanet & LeCun 2011: 98.97% (one network); MicronNet: 98.9%; human: 98.84%; "
            "spatial transformer network (Arcos-García et al. 2018, 48 px): 99.71%",
    "committee": "Ciresan et al. 2012: 99.46% (a committee of 25 networks, the IJCNN 2011 record)",
    "classic": "LeCun et al. 1998 style network, no published GTSRB figure",
}


@dataclass
class SeedSpread:
    """The spread of one preset's validation curve over seeds.

    Attributes:
        preset: the LeNet preset.
        seeds: the seeds found, ascending.
        epochs: epoch numbers 1..n (n = the shortest curve).
        low, mean, high: per-epoch min / mean / max validation accuracy over the seeds.
        best_val_accuracy: ``{seed: best validation accuracy}``.
        test_accuracy: ``{seed: test accuracy}`` for runs that have one.
        test_images: images in those runs' test split (None when unknown).
        run_ids: ``{seed: run id}`` of the runs used.
    """

    preset: str
    seeds: list[int]
    epochs: list[int]
    low: list[float]
    mean: list[float]
    high: list[float]
    best_val_accuracy: dict[int, float] = field(default_factory=dict)
    test_accuracy: dict[int, float] = field(default_factory=dict)
    test_images: int | None = None
    run_ids: dict[int, str] = field(default_factory=dict)

    @property
    def mean_test_accuracy(self) -> float | None:
        """Mean test accuracy over the seeds that have one, or None."""
        values = list(self.test_accuracy.values())
        return statistics.mean(values) if values else None


def _is_default_run(summary: runs.RunSummary, preset: str) -> bool:
    config = summary.config
    if summary.broken or summary.state != runs.COMPLETED:
        return False
    if config.get("model") != MODEL or config.get("preset") != preset or config.get("dataset") != DATASET:
        return False
    changes = reports.config_diff(config)
    return all(change.setting == SEED_KEY for change in changes)


def preset_runs(summaries, preset: str) -> list[runs.RunSummary]:
    """The completed GTSRB runs of ``preset`` with the preset's own settings, newest first.

    Args:
        summaries: ``runs.list_runs()`` output (newest first).
        preset: a LeNet preset name.

    Returns:
        The matching summaries, in the order given. Runs whose settings differ from the preset
        in anything but the seed (or that were trained by an older preset definition) are left
        out, so the figures describe the preset as it is now.
    """
    return [summary for summary in summaries if _is_default_run(summary, preset)]


def newest_per_seed(summaries, preset: str) -> dict[int, runs.RunSummary]:
    """The newest default run of each seed of ``preset`` (see ``preset_runs``), by seed ascending."""
    newest: dict[int, runs.RunSummary] = {}
    for summary in preset_runs(summaries, preset):
        newest.setdefault(int(summary.config.get(SEED_KEY, 0)), summary)
    return dict(sorted(newest.items()))


def _shared_test_images(summaries) -> int | None:
    """The test image count the runs share, or None when they differ or do not say."""
    counts = {(summary.results or {}).get("num_test_images") for summary in summaries}
    return counts.pop() if len(counts) == 1 else None


def seed_spread(summaries, preset: str = "seed", minimum_seeds: int = 2) -> SeedSpread | None:
    """Min / mean / max validation curves over the newest default run of each seed.

    Args:
        summaries: ``runs.list_runs()`` output (newest first).
        preset: a LeNet preset name.
        minimum_seeds: fewer distinct seeds than this gives None (one run is not a spread).

    Returns:
        A ``SeedSpread``, or None when there are too few seeds.
    """
    newest = newest_per_seed(summaries, preset)
    curves = {}
    for seed, summary in newest.items():
        metrics = runs.read_metrics(summary.path)
        values = [float(value) for value in metrics["val_accuracy"]] if len(metrics) else []
        if values:
            curves[seed] = values
    if len(curves) < max(1, int(minimum_seeds)):
        return None
    length = min(len(values) for values in curves.values())
    per_epoch = [[curves[seed][epoch] for seed in curves] for epoch in range(length)]
    test_accuracy = {seed: newest[seed].test_accuracy for seed in curves
                     if newest[seed].test_accuracy is not None}
    return SeedSpread(
        preset=preset, seeds=sorted(curves), epochs=list(range(1, length + 1)),
        low=[min(values) for values in per_epoch], mean=[statistics.mean(values) for values in per_epoch],
        high=[max(values) for values in per_epoch],
        best_val_accuracy={seed: max(curves[seed]) for seed in sorted(curves)},
        test_accuracy=dict(sorted(test_accuracy.items())),
        test_images=_shared_test_images(newest[seed] for seed in test_accuracy),
        run_ids={seed: newest[seed].run_id for seed in sorted(curves)},
    )


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def preset_rows(summaries) -> list[dict]:
    """One row per preset: measured here (split and images named), time, command, anchor.

    Args:
        summaries: ``runs.list_runs()`` output (newest first).

    Returns:
        Dicts with keys ``preset``, ``runs``, ``val accuracy``, ``test accuracy``, ``test images``,
        ``training time (s)``, ``command``, ``published anchor``. With several seeds the
        accuracies are means over the newest run of each seed, listed per seed in brackets.
    """
    rows = []
    for preset, command in PRESET_COMMANDS.items():
        chosen = list(newest_per_seed(summaries, preset).values())
        val = [summary.best_val_accuracy for summary in chosen if summary.best_val_accuracy is not None]
        test = [summary.test_accuracy for summary in chosen if summary.test_accuracy is not None]
        seconds = [summary.duration_seconds for summary in chosen if summary.duration_seconds is not None]
        test_text = _percent(statistics.mean(test) if test else None)
        if len(test) > 1:
            test_text += " (" + ", ".join(f"seed {int(summary.config.get(SEED_KEY, 0))}: "
                                          f"{_percent(summary.test_accuracy)}"
                                          for summary in chosen if summary.test_accuracy is not None) + ")"
        rows.append({
            "preset": preset,
            "runs": len(chosen),
            "val accuracy": _percent(statistics.mean(val) if val else None),
            "test accuracy": test_text,
            "test images": _shared_test_images(chosen),
            "training time (s)": round(statistics.mean(seconds)) if seconds else None,
            "command": command,
            "published anchor": ANCHORS[preset],
        })
    return rows
