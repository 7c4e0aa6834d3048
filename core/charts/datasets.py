"""Plotly figures for the Datasets page: class distribution, pixel histograms."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

SPLIT_COLORS = {"train": "#2c7fb8", "val": "#f39c12", "test": "#7f8c8d"}
HISTOGRAM_BINS = 64


def class_distribution_figure(class_names: list[str], counts: dict[str, list[int]],
                              title: str = "Images per class") -> go.Figure:
    """Stacked bars: images per class, one colour per split.

    Args:
        class_names: names in label order (hover text; the x axis shows ids for many classes).
        counts: ``{split: [count per class]}``.
        title: figure title.

    Returns:
        A ``go.Figure`` with one ``Bar`` trace per split.
    """
    many = len(class_names) > 10
    x = [str(index) if many else name for index, name in enumerate(class_names)]
    figure = go.Figure()
    for split, per_class in counts.items():
        figure.add_trace(go.Bar(
            name=f"{split} ({sum(per_class):,})", x=x, y=list(per_class),
            marker_color=SPLIT_COLORS.get(split), customdata=class_names,
            hovertemplate="%{customdata}<br>%{y:,} images<extra>" + split + "</extra>",
        ))
    figure.update_layout(
        title=title, barmode="stack", height=360, margin=dict(l=40, r=10, t=50, b=40),
        xaxis_title="class id" if many else "class", yaxis_title="images",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
    )
    if many:
        figure.update_xaxes(type="category", tickangle=0)
    return figure


def pixel_histogram_figure(before: np.ndarray, after: np.ndarray,
                           title: str = "Pixel values before and after preprocessing") -> go.Figure:
    """Overlaid histograms of the pixel values (all channels) of two image batches."""
    figure = go.Figure()
    for label, images, colour in (("before", before, "#95a5a6"), ("after", after, "#c0392b")):
        values = np.asarray(images).ravel()
        histogram, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(0, 256))
        figure.add_trace(go.Bar(name=label, x=(edges[:-1] + edges[1:]) / 2, y=histogram,
                                marker_color=colour, opacity=0.6, width=256 / HISTOGRAM_BINS))
    figure.update_layout(title=title, barmode="overlay", height=260, margin=dict(l=40, r=10, t=50, b=40),
                         xaxis_title="pixel value", yaxis_title="count",
                         legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"))
    return figure
