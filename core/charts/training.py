"""Plotly figures of training runs: learning curves, confusion matrix, per-class accuracy.

Every builder takes plain data (a metrics DataFrame, lists from ``results.json``) and returns a
``go.Figure``; nothing here reads files or imports Streamlit.
"""

from __future__ import annotations

import math
from typing import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
REFERENCE_COLOR = "#7f7f7f"
BAND_COLOR = "#2ca02c"
BAND_FILL = "rgba(44, 160, 44, 0.18)"
CURVE_HEIGHT = 380
# Class names replace ids on the axes when there are at most this many classes (they fit).
MAX_NAMED_TICKS = 15
TICK_NAME_CHARACTERS = 22


def _clean(values) -> list:
    """NaN/inf become None so Plotly leaves gaps instead of failing JSON encoding."""
    cleaned = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            cleaned.append(None)
            continue
        cleaned.append(number if math.isfinite(number) else None)
    return cleaned


def learning_curves(metrics, reference_val_accuracy: Sequence[float] | None = None,
                    reference_name: str = "study (val)", total_epochs: int | None = None,
                    title: str | None = None, reference_band=None) -> go.Figure:
    """Loss and accuracy per epoch, training against validation, side by side.

    Args:
        metrics: a DataFrame with ``core.runs.METRICS_COLUMNS`` (may be empty).
        reference_val_accuracy: a reference validation-accuracy curve (epoch 1, 2, ...) drawn
            dashed on the accuracy panel, e.g. the study's.
        reference_name: legend name of the reference curve.
        total_epochs: fixes the x range to the planned epochs while a run is in progress.
        title: figure title.
        reference_band: a ``core.results.SeedSpread`` (or None): its min-max validation
            accuracy over seeds is drawn as a shaded band on the accuracy panel, its mean dotted.

    Returns:
        A two-panel figure (loss left, accuracy right).
    """
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"),
                           horizontal_spacing=0.1)
    epochs = list(metrics["epoch"]) if len(metrics) else []
    for column, name, color, dash in (("loss", "train", TRAIN_COLOR, None),
                                      ("val_loss", "validation", VAL_COLOR, None)):
        figure.add_trace(go.Scatter(x=epochs, y=_clean(metrics[column]) if len(metrics) else [],
                                    mode="lines+markers", name=f"{name} loss",
                                    line={"color": color, "dash": dash}, legendgroup=name),
                         row=1, col=1)
    for column, name, color in (("accuracy", "train", TRAIN_COLOR),
                                ("val_accuracy", "validation", VAL_COLOR)):
        figure.add_trace(go.Scatter(x=epochs, y=_clean(metrics[column]) if len(metrics) else [],
                                    mode="lines+markers", name=f"{name} accuracy",
                                    line={"color": color}, legendgroup=name),
                         row=1, col=2)
    if reference_val_accuracy:
        figure.add_trace(go.Scatter(
            x=list(range(1, len(reference_val_accuracy) + 1)), y=list(reference_val_accuracy),
            mode="lines", name=reference_name, line={"color": REFERENCE_COLOR, "dash": "dash"},
        ), row=1, col=2)
    if reference_band is not None and reference_band.epochs:
        _add_band(figure, reference_band)
    band_epochs = len(reference_band.epochs) if reference_band is not None else 0
    last_epoch = max([total_epochs or 0, len(reference_val_accuracy or ()), band_epochs, *epochs, 1])
    figure.update_xaxes(title_text="epoch", range=[0.5, last_epoch + 0.5], dtick=max(1, last_epoch // 10))
    figure.update_yaxes(title_text="cross-entropy", row=1, col=1, rangemode="tozero")
    figure.update_yaxes(title_text="accuracy", row=1, col=2, range=[0, 1.02])
    figure.update_layout(height=CURVE_HEIGHT, title=title, margin={"t": 60, "b": 40, "l": 50, "r": 20},
                         legend={"orientation": "h", "y": -0.2})
    return figure


def _add_band(figure: go.Figure, spread) -> None:
    """Draws a seed spread's min-max band and mean on the accuracy panel (row 1, column 2)."""
    seeds = ", ".join(str(seed) for seed in spread.seeds)
    name = f"preset {spread.preset}, seeds {seeds} (val, min-max)"
    figure.add_trace(go.Scatter(x=list(spread.epochs), y=list(spread.high), mode="lines",
                                line={"width": 0, "color": BAND_COLOR}, showlegend=False,
                                hoverinfo="skip", legendgroup="band"), row=1, col=2)
    figure.add_trace(go.Scatter(x=list(spread.epochs), y=list(spread.low), mode="lines",
                                line={"width": 0, "color": BAND_COLOR}, fill="tonexty",
                                fillcolor=BAND_FILL, name=name, legendgroup="band"), row=1, col=2)
    figure.add_trace(go.Scatter(x=list(spread.epochs), y=list(spread.mean), mode="lines",
                                line={"color": BAND_COLOR, "dash": "dot"},
                                name=f"preset {spread.preset} (val, mean of seeds)",
                                legendgroup="band"), row=1, col=2)


def axis_labels(class_names: Sequence[str], size: int) -> list[str]:
    """Tick labels for ``size`` classes: names (shortened) when they fit, else the class ids.

    Args:
        class_names: one name per class (ignored when the count differs from ``size``).
        size: number of classes on the axis.

    Returns:
        ``size`` labels: names up to ``MAX_NAMED_TICKS`` classes, ids above.
    """
    if len(class_names) != size or size > MAX_NAMED_TICKS:
        return [str(index) for index in range(size)]
    return [name if len(name) <= TICK_NAME_CHARACTERS else name[:TICK_NAME_CHARACTERS - 1] + "…"
            for name in map(str, class_names)]


def confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str],
                     title: str = "Confusion matrix (test)", normalize: bool = True) -> go.Figure:
    """A heatmap of true (rows) against predicted (columns) classes, names on hover.

    Args:
        matrix: counts, ``matrix[true][predicted]``.
        class_names: one name per class.
        title: figure title.
        normalize: colour by share of each true class (counts still shown on hover).

    Returns:
        A square heatmap figure.
    """
    size = len(matrix)
    names = list(class_names) if len(class_names) == size else [str(index) for index in range(size)]
    counts = [list(map(int, row)) for row in matrix]
    if normalize:
        colours = [[count / (sum(row) or 1) for count in row] for row in counts]
    else:
        colours = counts
    hover = [[f"true: {index_true} {names[index_true]}<br>predicted: {index_predicted} "
              f"{names[index_predicted]}<br>images: {counts[index_true][index_predicted]}"
              for index_predicted in range(size)] for index_true in range(size)]
    figure = go.Figure(go.Heatmap(
        z=colours, x=list(range(size)), y=list(range(size)), text=hover, hoverinfo="text",
        colorscale="Blues", colorbar={"title": "share" if normalize else "images"},
    ))
    side = max(420, min(900, 18 * size + 160))
    ticks = {"tickmode": "array", "tickvals": list(range(size)), "ticktext": axis_labels(names, size),
             "tickfont": {"size": 9}} if size <= 50 else {"tickfont": {"size": 9}}
    named = size <= MAX_NAMED_TICKS and len(class_names) == size
    figure.update_layout(
        title=title, height=side, margin={"t": 50, "b": 50, "l": 160 if named else 60, "r": 20},
        xaxis={"title": "predicted class", **ticks},
        yaxis={"title": "true class", "autorange": "reversed", "scaleanchor": "x", **ticks},
    )
    return figure


def per_class_accuracy(accuracies: Sequence[float | None], class_names: Sequence[str],
                       title: str = "Accuracy per class (test)") -> go.Figure:
    """Bars of each class's accuracy, weakest classes highlighted, names on hover."""
    values = _clean(accuracies)
    names = list(class_names) if len(class_names) == len(values) else [str(i) for i in range(len(values))]
    colours = ["#d62728" if value is not None and value < 0.9 else TRAIN_COLOR for value in values]
    figure = go.Figure(go.Bar(
        x=list(range(len(values))), y=values, marker_color=colours,
        customdata=names, hovertemplate="class %{x}: %{customdata}<br>accuracy %{y:.3f}<extra></extra>",
    ))
    figure.update_layout(title=title, height=340, margin={"t": 50, "b": 40, "l": 50, "r": 20},
                         xaxis={"title": "class", "tickfont": {"size": 9},
                                **({"tickmode": "array", "tickvals": list(range(len(values))),
                                    "ticktext": axis_labels(names, len(values))}
                                   if len(values) <= 50 else {})},
                         yaxis={"title": "accuracy", "range": [0, 1.02]})
    return figure
