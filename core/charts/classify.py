"""What the Classify page shows: Plotly figures (top-k probabilities, accuracy of labelled
uploads), run ranking for the pickers, and prediction tables.

Inference itself lives in ``core.predictor``; this module only presents its outputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from core import runs

TOP_COLOR = "#c0392b"  # the app's primary colour: the predicted class
OTHER_COLOR = "#95a5a6"
TRUE_COLOR = "#27ae60"  # the true class, when the user gave one
BAR_HEIGHT_PIXELS = 34
MIN_FIGURE_HEIGHT = 160


def top_k_figure(ranked: list[dict], true_class: str | None = None,
                 title: str | None = None) -> go.Figure:
    """Horizontal bars of the top-k classes, most probable on top.

    Args:
        ranked: ``[{"class_name", "probability", ...}]`` most probable first (one row of
            ``Predictor.top_k``).
        true_class: the true class name, drawn green when it is among the bars.
        title: optional figure title.

    Returns:
        A ``go.Figure`` with one ``Bar`` trace; probabilities are shown as percentages.
    """
    if not ranked:
        raise ValueError("ranked must hold at least one class, received an empty list")
    names = [str(row["class_name"]) for row in ranked]
    probabilities = [float(row["probability"]) for row in ranked]
    colors = [TOP_COLOR if index == 0 else OTHER_COLOR for index in range(len(ranked))]
    if true_class is not None:
        colors = [TRUE_COLOR if name == true_class else color for name, color in zip(names, colors)]
    figure = go.Figure(go.Bar(
        x=probabilities,
        y=names,
        orientation="h",
        marker_color=colors,
        text=[f"{100 * value:.1f}%" for value in probabilities],
        textposition="auto",
        hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        name="probability",
    ))
    figure.update_layout(
        title=title,
        height=max(MIN_FIGURE_HEIGHT, BAR_HEIGHT_PIXELS * len(ranked) + (90 if title else 50)),
        margin=dict(l=10, r=10, t=40 if title else 10, b=30),
        xaxis=dict(range=[0, 1], tickformat=".0%", title="probability"),
        yaxis=dict(autorange="reversed", automargin=True),
        showlegend=False,
    )
    return figure


def per_class_accuracy_figure(table) -> go.Figure:
    """Accuracy per true class of a labelled prediction table (the "from the internet" mode).

    Args:
        table: a DataFrame with ``true label`` and ``correct`` columns (rows without a true
            label are ignored).

    Returns:
        A ``go.Figure`` of bars, one per true class, with the image count in the hover.
    """
    labelled = table[table["true label"].notna() & (table["true label"] != "")]
    grouped = labelled.groupby("true label")["correct"].agg(["mean", "count"]).reset_index()
    figure = go.Figure(go.Bar(
        x=grouped["true label"],
        y=grouped["mean"],
        customdata=grouped["count"],
        marker_color=TOP_COLOR,
        hovertemplate="%{x}: %{y:.0%} of %{customdata} image(s)<extra></extra>",
        name="accuracy",
    ))
    figure.update_layout(
        height=280, margin=dict(l=10, r=10, t=10, b=10),
        yaxis=dict(range=[0, 1], tickformat=".0%", title="accuracy"), showlegend=False,
    )
    return figure


# --- choosing runs and tabulating predictions ------------------------------------------------

def format_probability(probability: float) -> str:
    """Formats a probability as the page shows it, e.g. ``0.9731 -> "97.3%"``."""
    return f"{100.0 * float(probability):.1f}%"


def run_score(summary) -> tuple[float | None, str]:
    """A run's headline accuracy: test accuracy when it has one, else best validation accuracy.

    Args:
        summary: a ``core.runs.RunSummary``.

    Returns:
        ``(accuracy or None, "test" | "val" | "")``.
    """
    if summary.test_accuracy is not None:
        return float(summary.test_accuracy), "test"
    best = summary.best_val_accuracy
    if best is None and summary.results and summary.results.get("best_val_accuracy") is not None:
        best = summary.results["best_val_accuracy"]
    if best is not None:
        return float(best), "val"
    return None, ""


def finished_runs(runs_root: str | os.PathLike | None = None) -> list:
    """Completed, readable runs that have a ``model.keras``, newest first.

    Returns:
        A list of ``core.runs.RunSummary``.
    """
    return [
        summary for summary in runs.list_runs(runs_root)
        if not summary.broken and summary.state == runs.COMPLETED
        and (summary.path / runs.MODEL_FILE).is_file()
    ]


def best_runs_by_dataset(summaries: list) -> dict[str, Any]:
    """The best run of each dataset: runs scored on the test split beat runs scored on
    validation only, then the higher accuracy wins (the newest on ties; unscored runs last).

    Args:
        summaries: ``RunSummary`` objects, newest first (as ``finished_runs`` returns them).

    Returns:
        ``{dataset: RunSummary}`` ordered by dataset name.
    """
    def rank(summary) -> tuple:
        score, kind = run_score(summary)
        return (score is not None, kind == "test", score if score is not None else 0.0)

    best: dict[str, Any] = {}
    for summary in summaries:  # newest first: a strictly better rank is needed to replace
        current = best.get(summary.dataset)
        if current is None or rank(summary) > rank(current):
            best[summary.dataset] = summary
    return dict(sorted(best.items()))


def run_label(summary) -> str:
    """A one-line label for pickers, e.g. ``"lenet5 seed gtsrb · 2026… — test 95.5%"``."""
    score, kind = run_score(summary)
    suffix = f" — {kind} {format_probability(score)}" if score is not None else ""
    return f"{summary.label}{suffix}"


def guess_label(file_name: str, class_names: list[str]) -> str | None:
    """Guesses a true label from a file name such as ``cat.12.jpg`` or ``stop_sign-3.png``.

    The longest class name that starts the file's stem (ignoring case, with ``_``/``-``/space
    treated alike) wins; None when no class name fits.
    """
    def simplify(text: str) -> str:
        return "".join(" " if character in "_-." else character for character in text.lower())

    stem = simplify(Path(str(file_name)).stem)
    candidates = [name for name in class_names
                  if simplify(name) and (stem == simplify(name)
                                         or stem.startswith(simplify(name) + " ")
                                         or stem.startswith(simplify(name) + "s "))]
    return max(candidates, key=len) if candidates else None


PREDICTION_COLUMNS = ("file", "predicted", "confidence", "true label")


def prediction_table(file_names: list[str], probabilities: np.ndarray, class_names: list[str],
                     true_labels: list[str | None] | None = None):
    """One row per image: file, predicted class, its probability, and the (optional) true label.

    Args:
        file_names: one name per image.
        probabilities: (N, num_classes) array from ``Predictor.predict``.
        class_names: names of the model's outputs.
        true_labels: optional true class names (None or "" = unknown).

    Returns:
        A pandas DataFrame with ``PREDICTION_COLUMNS``.
    """
    import pandas as pd

    probabilities = np.asarray(probabilities)
    if len(file_names) != len(probabilities):
        raise ValueError(f"received {len(file_names)} file names for {len(probabilities)} "
                         f"rows of probabilities")
    labels = list(true_labels) if true_labels is not None else [None] * len(file_names)
    best = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, int)
    return pd.DataFrame({
        "file": [str(name) for name in file_names],
        "predicted": [class_names[index] for index in best],
        "confidence": [float(probabilities[row, index]) for row, index in enumerate(best)],
        "true label": [label if label else None for label in labels],
    }, columns=list(PREDICTION_COLUMNS))


def score_table(table) -> tuple[Any, float | None, int]:
    """Adds a ``correct`` column (None where no true label) and computes the accuracy.

    Args:
        table: a DataFrame from ``prediction_table`` (possibly with edited true labels).

    Returns:
        ``(scored table, accuracy over labelled rows or None, number of labelled rows)``.
    """
    scored = table.copy()
    labelled = scored["true label"].notna() & (scored["true label"].astype(str) != "")
    scored["correct"] = [
        bool(predicted == true) if has_label else None
        for predicted, true, has_label in zip(scored["predicted"], scored["true label"], labelled)
    ]
    count = int(labelled.sum())
    accuracy = float((scored.loc[labelled, "predicted"] == scored.loc[labelled, "true label"]).mean()) \
        if count else None
    return scored, accuracy, count
