"""Plotly figures for the Classify page: top-k probabilities, accuracy of labelled uploads."""

from __future__ import annotations

import plotly.graph_objects as go

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
