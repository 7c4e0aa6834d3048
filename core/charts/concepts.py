"""Plotly figures for the Concepts page: heatmaps, pooling, receptive fields."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

HEATMAP_COLORSCALE = "Greys_r"
FEATURE_COLORSCALE = "RdBu_r"
MAX_CELLS_WITH_TEXT = 16  # write numbers into cells only for small arrays (per side)
FIGURE_HEIGHT = 360
RECEPTIVE_FIELD_COLOR = "#ffb000"
PADDING_COLOR = "#1f77b4"
SERIES_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")


def _square_axes(figure: go.Figure, row=None, col=None) -> None:
    figure.update_yaxes(autorange="reversed", scaleanchor="x" if row is None else None,
                        showgrid=False, zeroline=False, row=row, col=col)
    figure.update_xaxes(showgrid=False, zeroline=False, row=row, col=col)


def _heatmap_trace(values: np.ndarray, colorscale: str, zmid=None, show_scale=True,
                   name: str = "") -> go.Heatmap:
    values = np.asarray(values, dtype=np.float64)
    small = max(values.shape) <= MAX_CELLS_WITH_TEXT
    return go.Heatmap(
        z=values,
        colorscale=colorscale,
        zmid=zmid,
        showscale=show_scale,
        name=name,
        text=np.round(values, 2) if small else None,
        texttemplate="%{text}" if small else None,
        hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra>" + name + "</extra>",
    )


def heatmap_figure(values, title: str, colorscale: str = HEATMAP_COLORSCALE,
                   centred: bool = False) -> go.Figure:
    """One 2-D array as an image-oriented heatmap (row 0 at the top).

    Args:
        values: 2-D array.
        title: figure title.
        colorscale: Plotly colour scale.
        centred: centre the colour scale on 0 (for signed feature maps).

    Returns:
        A ``go.Figure``.
    """
    values = np.asarray(values, dtype=np.float64)
    figure = go.Figure(_heatmap_trace(values, colorscale, zmid=0.0 if centred else None, name=title))
    figure.update_layout(title=f"{title} ({values.shape[0]}×{values.shape[1]})",
                         height=FIGURE_HEIGHT, margin=dict(l=10, r=10, t=40, b=10))
    _square_axes(figure)
    return figure


def padded_input_figure(padded, before: tuple[int, int], image_shape: tuple[int, int]) -> go.Figure:
    """The zero-padded input with the original image outlined.

    Args:
        padded: the padded 2-D array.
        before: padding ``(top, left)``.
        image_shape: ``(height, width)`` of the original image.

    Returns:
        A ``go.Figure`` whose one shape is the original image's outline.
    """
    figure = heatmap_figure(padded, "Zero-padded input")
    top, left = before
    height, width = image_shape
    figure.add_shape(type="rect", x0=left - 0.5, x1=left + width - 0.5, y0=top - 0.5,
                     y1=top + height - 0.5, line=dict(color=PADDING_COLOR, width=2),
                     name="original image")
    return figure


def pooling_figure(max_pooled, average_pooled) -> go.Figure:
    """Max and average pooling of the same feature map, side by side."""
    max_pooled = np.asarray(max_pooled, dtype=np.float64)
    average_pooled = np.asarray(average_pooled, dtype=np.float64)
    figure = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.08,
        subplot_titles=(f"Max pooling ({max_pooled.shape[0]}×{max_pooled.shape[1]})",
                        f"Average pooling ({average_pooled.shape[0]}×{average_pooled.shape[1]})"),
    )
    figure.add_trace(_heatmap_trace(max_pooled, FEATURE_COLORSCALE, zmid=0.0, show_scale=False,
                                    name="max"), row=1, col=1)
    figure.add_trace(_heatmap_trace(average_pooled, FEATURE_COLORSCALE, zmid=0.0, name="average"),
                     row=1, col=2)
    for column in (1, 2):
        _square_axes(figure, row=1, col=column)
    figure.update_layout(height=FIGURE_HEIGHT, margin=dict(l=10, r=10, t=40, b=10))
    return figure


def receptive_field_figure(image, row_window: tuple[int, int], column_window: tuple[int, int],
                           title: str) -> go.Figure:
    """The input pixels one unit sees, drawn over the image.

    The solid rectangle is the part inside the image; a dashed one shows the whole theoretical
    receptive field when it reaches into the zero-padding.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (or a 2-D grey array).
        row_window: first and last input row the unit sees (inclusive, unclipped).
        column_window: first and last input column (inclusive, unclipped).
        title: figure title.

    Returns:
        A ``go.Figure`` with named shapes ``receptive field`` (and ``padding part``).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    height, width = image.shape[:2]
    figure = go.Figure(go.Image(z=image, hovertemplate="row %{y}, col %{x}<extra></extra>"))
    (row_first, row_last), (col_first, col_last) = row_window, column_window
    clipped = (max(row_first, 0), min(row_last, height - 1), max(col_first, 0),
               min(col_last, width - 1))
    figure.add_shape(type="rect", x0=clipped[2] - 0.5, x1=clipped[3] + 0.5, y0=clipped[0] - 0.5,
                     y1=clipped[1] + 0.5, line=dict(color=RECEPTIVE_FIELD_COLOR, width=3),
                     fillcolor=RECEPTIVE_FIELD_COLOR, opacity=0.3, name="receptive field")
    if (row_first, row_last, col_first, col_last) != clipped:
        figure.add_shape(type="rect", x0=col_first - 0.5, x1=col_last + 0.5, y0=row_first - 0.5,
                         y1=row_last + 0.5, line=dict(color=RECEPTIVE_FIELD_COLOR, width=2,
                                                      dash="dash"), name="padding part")
    figure.update_layout(title=title, height=FIGURE_HEIGHT + 80, margin=dict(l=10, r=10, t=40, b=10))
    pad = max(0, -row_first, -col_first, row_last - height + 1, col_last - width + 1)
    figure.update_xaxes(range=[-0.5 - pad, width - 0.5 + pad], showgrid=False)
    figure.update_yaxes(range=[height - 0.5 + pad, -0.5 - pad], showgrid=False)
    return figure


def receptive_field_depth_figure(series: dict[str, list[dict]]) -> go.Figure:
    """Receptive field against depth, one line per network.

    Args:
        series: network name → ``analyze_stack`` rows (dense rows, whose ``rf`` is None, are
            skipped).

    Returns:
        A ``go.Figure`` with one trace per network; x is the conv/pool layer's depth.
    """
    figure = go.Figure()
    for index, (name, rows) in enumerate(series.items()):
        spatial = [row for row in rows if row.get("rf") is not None]
        figure.add_trace(go.Scatter(
            x=list(range(1, len(spatial) + 1)),
            y=[row["rf"] for row in spatial],
            mode="lines+markers",
            name=name,
            line=dict(color=SERIES_COLORS[index % len(SERIES_COLORS)]),
            customdata=[[row["name"], row["jump"]] for row in spatial],
            hovertemplate="%{customdata[0]}: rf %{y}, jump %{customdata[1]}<extra>" + name
                          + "</extra>",
        ))
    figure.update_layout(title="Receptive field against depth", height=FIGURE_HEIGHT,
                         xaxis_title="conv/pool layer (depth)",
                         yaxis_title="receptive field (input pixels)",
                         margin=dict(l=10, r=10, t=40, b=10))
    return figure


CONNECTED_COLOR = "#1f77b4"
UNCONNECTED_COLOR = "#f2f2f2"


def connection_table_figure(matrix, title: str = "C3 maps fed by each S2 map (LeCun et al. 1998, table I)",
                            input_name: str = "S2", output_name: str = "C3") -> go.Figure:
    """A connection table as a grid: a filled cell where an input map feeds an output map.

    Args:
        matrix: ``(num_inputs, num_outputs)`` booleans (``core.concepts.connection_matrix``).
        title: figure title.
        input_name: name of the input layer (rows).
        output_name: name of the output layer (columns).

    Returns:
        A heatmap figure with an "X" in every connected cell and the count per column on hover.
    """
    values = np.asarray(matrix, dtype=bool)
    inputs, outputs = values.shape
    per_output = values.sum(axis=0)
    hover = [[f"{input_name} map {row} → {output_name} map {column}: "
              f"{'connected' if values[row, column] else 'not connected'}"
              f"<br>{output_name} map {column} reads {per_output[column]} of {inputs} maps"
              for column in range(outputs)] for row in range(inputs)]
    figure = go.Figure(go.Heatmap(
        z=values.astype(int), x=list(range(outputs)), y=list(range(inputs)),
        colorscale=[[0.0, UNCONNECTED_COLOR], [1.0, CONNECTED_COLOR]], zmin=0, zmax=1,
        showscale=False, xgap=2, ygap=2,
        text=[["X" if cell else "" for cell in row] for row in values], texttemplate="%{text}",
        customdata=hover, hovertemplate="%{customdata}<extra></extra>",
    ))
    figure.update_layout(title=title, height=80 + 34 * inputs + 60, margin={"t": 50, "b": 40, "l": 60, "r": 20})
    figure.update_xaxes(title_text=f"{output_name} feature map", dtick=1, side="bottom")
    figure.update_yaxes(title_text=f"{input_name} map", dtick=1, autorange="reversed")
    return figure
