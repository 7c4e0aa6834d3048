"""Comparing runs: the per-run table, overlaid curves, the strategy quadrant, data efficiency,
and CSV/PNG exports. Plain Python (pandas, Plotly, Pillow); the Compare page only renders.

* ``comparison_table(summaries)``: one row per run (best val / test accuracy, epochs to reach
  95 % of the run's best, trainable and frozen parameters, seconds per epoch, device...).
* ``curves_frame`` / ``curves_figure``: validation accuracy or loss against epoch or against
  wall-clock seconds (cumulative ``epoch_seconds``).
* ``quadrant_figure``: the study's dataset size × similarity chart with runs placed on it, the
  similarity being the measured transferability score of the run's source
  (``core.transferability``, normalised); ``transferability_scatter``: score against accuracy.
* ``data_efficiency_frame`` / ``data_efficiency_figure``: accuracy against training images,
  scratch against transfer (sweeps and few-shot experiments).
* ``comparison_csv`` and ``comparison_png`` (drawn with Pillow: no kaleido/Chrome needed).
"""

from __future__ import annotations

import io
import math

import pandas as pd
import plotly.graph_objects as go


FRACTION_OF_BEST = 0.95
SMALL_DATASET_LIMIT = 10_000  # labelled training images: below is "small" on the quadrant
SIMILARITY_THRESHOLD = 0.5
SCRATCH, TRANSFER, SOURCE, OTHER = "scratch", "transfer", "source", "other"
KIND_COLORS = {SCRATCH: "#d62728", TRANSFER: "#1f77b4", SOURCE: "#7f7f7f", OTHER: "#9467bd"}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
METRIC_TITLES = {"val_accuracy": "Validation accuracy", "val_loss": "Validation loss",
                 "accuracy": "Training accuracy", "loss": "Training loss"}
X_AXES = {"epoch": "Epoch", "seconds": "Wall-clock seconds (cumulative epoch time)"}
TABLE_COLUMNS = ("run_id", "label", "kind", "model", "strategy", "dataset", "state",
                 "train_images", "best_val_accuracy", "test_accuracy", "epochs_done",
                 f"epochs_to_{int(FRACTION_OF_BEST * 100)}pct_best", "trainable_params",
                 "frozen_params", "seconds_per_epoch", "total_seconds", "device")
EPOCHS_TO_BEST_COLUMN = TABLE_COLUMNS[11]

# The study's "implementation strategies" slide (Yosinski et al. 2014; CS231n).
QUADRANTS = (
    {"size": "small", "similarity": "high", "strategy": "Feature extraction",
     "detail": "freeze the base, train a new classifier on top"},
    {"size": "large", "similarity": "high", "strategy": "Fine-tune",
     "detail": "start from the pretrained weights, retrain the top block(s)"},
    {"size": "small", "similarity": "low", "strategy": "Features from earlier layers",
     "detail": "generic early features + a classifier; fine-tune little"},
    {"size": "large", "similarity": "low", "strategy": "Fine-tune everything / scratch",
     "detail": "enough data to retrain the whole network"},
)

def run_kind(config: dict) -> str:
    """``scratch``, ``transfer``, ``source`` (a few-shot source run) or ``other``."""
    model = str(config.get("model", ""))
    strategy = config.get("strategy")
    if config.get("role") == SOURCE:
        return SOURCE
    if model == "lenet5":
        return SCRATCH
    if strategy == "scratch":
        return SCRATCH
    if strategy in ("feature-extraction", "fine-tune"):
        return TRANSFER
    return OTHER


def epochs_to_fraction(metrics: pd.DataFrame, fraction: float = FRACTION_OF_BEST,
                       column: str = "val_accuracy") -> int | None:
    """First epoch whose ``column`` reaches ``fraction`` of the run's best (None without data)."""
    if metrics is None or not len(metrics) or column not in metrics or not metrics[column].notna().any():
        return None
    values = metrics[column]
    best = float(values.max())
    reached = metrics.loc[values >= fraction * best, "epoch"]
    return int(reached.iloc[0]) if len(reached) else None


def _train_images(summary) -> int | None:
    results = summary.results or {}
    if results.get("num_train_images") is not None:
        return int(results["num_train_images"])
    config = summary.config
    if config.get("train_size"):
        return int(config["train_size"])
    return None


def comparison_table(summaries, metrics_by_run: dict | None = None) -> pd.DataFrame:
    """One row per run with the figures the Compare page shows.

    Args:
        summaries: ``core.runs.RunSummary`` objects.
        metrics_by_run: run id -> metrics DataFrame (default: read each run's ``metrics.csv``).

    Returns:
        A DataFrame with ``TABLE_COLUMNS``.
    """
    from core import runs

    rows = []
    for summary in summaries:
        metrics = (metrics_by_run or {}).get(summary.run_id)
        if metrics is None:
            try:
                metrics = runs.read_metrics(summary.path)
            except runs.RunError:
                metrics = None
        results = summary.results or {}
        seconds = metrics["epoch_seconds"].dropna() if metrics is not None and len(metrics) else pd.Series(dtype=float)
        rows.append({
            "run_id": summary.run_id,
            "label": summary.label,
            "kind": run_kind(summary.config),
            "model": summary.model,
            "strategy": summary.config.get("strategy") or summary.config.get("preset") or "",
            "dataset": summary.dataset,
            "state": summary.state,
            "train_images": _train_images(summary),
            "best_val_accuracy": summary.best_val_accuracy,
            "test_accuracy": summary.test_accuracy,
            "epochs_done": summary.epochs_done,
            EPOCHS_TO_BEST_COLUMN: epochs_to_fraction(metrics),
            "trainable_params": results.get("trainable_params"),
            "frozen_params": results.get("non_trainable_params"),
            "seconds_per_epoch": float(seconds.mean()) if len(seconds) else None,
            "total_seconds": float(seconds.sum()) if len(seconds) else None,
            "device": summary.status.get("device") or "",
        })
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def curves_frame(metrics_by_label: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Long table ``label, epoch, seconds, <metrics>``; seconds = cumulative ``epoch_seconds``."""
    frames = []
    for label, metrics in metrics_by_label.items():
        if metrics is None or not len(metrics):
            continue
        frame = metrics.copy()
        frame["seconds"] = frame["epoch_seconds"].fillna(0.0).cumsum()
        frame.insert(0, "label", label)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["label", "epoch", "seconds", "val_accuracy", "val_loss"])
    return pd.concat(frames, ignore_index=True)


def curves_figure(metrics_by_label: dict[str, pd.DataFrame], metric: str = "val_accuracy",
                  x_axis: str = "epoch") -> go.Figure:
    """Overlaid curves of one metric for several runs.

    Args:
        metrics_by_label: legend label -> metrics DataFrame.
        metric: a ``metrics.csv`` column (``val_accuracy``, ``val_loss``...).
        x_axis: ``"epoch"`` or ``"seconds"``.

    Returns:
        A Plotly figure, one line per run.
    """
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis must be one of {tuple(X_AXES)}, received {x_axis!r}")
    if metric not in METRIC_TITLES:
        raise ValueError(f"metric must be one of {tuple(METRIC_TITLES)}, received {metric!r}")
    frame = curves_frame(metrics_by_label)
    figure = go.Figure()
    for index, (label, group) in enumerate(frame.groupby("label", sort=False)):
        figure.add_trace(go.Scatter(x=group[x_axis], y=group[metric], mode="lines+markers",
                                    name=label, line={"color": PALETTE[index % len(PALETTE)]},
                                    marker={"size": 5}))
    figure.update_layout(title=f"{METRIC_TITLES[metric]} vs {X_AXES[x_axis].split(' (')[0].lower()}",
                         xaxis_title=X_AXES[x_axis], yaxis_title=METRIC_TITLES[metric],
                         legend={"orientation": "h", "y": -0.25}, margin={"t": 50, "b": 10},
                         height=420)
    if metric.endswith("accuracy"):
        figure.update_yaxes(rangemode="tozero")
    return figure


QUADRANT_COLUMNS = ["run_id", "label", "kind", "strategy", "dataset", "train_images", "source",
                    "metric", "score", "similarity", "accuracy", "winner", "winner_accuracy"]


def _classes_key(config: dict):
    classes = config.get("classes")
    return tuple(int(value) for value in classes) if classes is not None else None


def quadrant_pairs(summaries) -> list[tuple[str, str, tuple | None]]:
    """The distinct ``(source, dataset, classes)`` a set of runs needs a similarity score for."""
    from core import transferability

    pairs = []
    for summary in summaries:
        source = transferability.source_of_run(summary.config)
        pair = (source, summary.dataset, _classes_key(summary.config))
        if source is not None and pair not in pairs:
            pairs.append(pair)
    return pairs


def quadrant_points(summaries, metric: str = "logme", lookup=None) -> pd.DataFrame:
    """Runs placed on the quadrant by their source's measured transferability to their data.

    Args:
        summaries: ``core.runs.RunSummary`` objects.
        metric: ``logme``, ``leep`` or ``hscore``.
        lookup: ``lookup(source, dataset, classes) -> score details or None``; default the
            on-disk cache of ``core.transferability.cached_score`` (nothing is computed here).

    Returns:
        One row per run whose source has a score: ``QUADRANT_COLUMNS``; ``similarity`` is the
        normalised score, ``winner`` the strategy with the best accuracy among the runs of the
        same dataset and training size.
    """
    from core import transferability

    if lookup is None:
        def lookup(source, dataset, classes):
            return transferability.cached_score(source, dataset, metric, classes=classes)

    rows = []
    for summary in summaries:
        images = _train_images(summary)
        source = transferability.source_of_run(summary.config)
        if source is None or not images:
            continue
        details = lookup(source, summary.dataset, _classes_key(summary.config))
        if not details:
            continue
        accuracy = summary.test_accuracy if summary.test_accuracy is not None else summary.best_val_accuracy
        normalised = details.get("normalised")
        if normalised is None:
            normalised = transferability.normalised_score(metric, details["score"], details["class_fractions"])
        rows.append({"run_id": summary.run_id, "label": summary.label, "kind": run_kind(summary.config),
                     "strategy": summary.config.get("strategy") or summary.config.get("preset") or "",
                     "dataset": summary.dataset, "train_images": images, "source": source,
                     "metric": metric, "score": float(details["score"]), "similarity": float(normalised),
                     "accuracy": None if accuracy is None else float(accuracy),
                     "winner": None, "winner_accuracy": None})
    frame = pd.DataFrame(rows, columns=QUADRANT_COLUMNS)
    for _, group in frame.groupby(["dataset", "train_images"]):
        scored = group.dropna(subset=["accuracy"])
        if len(scored):
            best = scored.loc[scored["accuracy"].idxmax()]
            frame.loc[group.index, "winner"] = best["strategy"]
            frame.loc[group.index, "winner_accuracy"] = best["accuracy"]
    return frame


def _percent(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{100 * value:.1f}%"


def recommended_strategy(train_images: int, similarity_value: float) -> str:
    """The quadrant's recommendation for a dataset size and similarity."""
    size = "small" if train_images < SMALL_DATASET_LIMIT else "large"
    level = "high" if similarity_value >= SIMILARITY_THRESHOLD else "low"
    for quadrant in QUADRANTS:
        if quadrant["size"] == size and quadrant["similarity"] == level:
            return quadrant["strategy"]
    raise AssertionError("unreachable: four quadrants cover every case")


def quadrant_figure(points: pd.DataFrame | None = None, metric: str = "logme") -> go.Figure:
    """The study's dataset size × similarity chart, runs placed by measured transferability.

    Args:
        points: ``quadrant_points(...)`` (may be empty: the chart alone still teaches).
        metric: the metric the similarity axis shows (its label names it).
    """
    from core import transferability

    title = transferability.METRIC_TITLES[transferability.check_metric(metric)]
    low_x, high_x = 1.0, 6.0  # log10 of training images: 10 .. 1,000,000
    split_x = math.log10(SMALL_DATASET_LIMIT)
    figure = go.Figure()
    fills = {("small", "high"): "rgba(31,119,180,0.10)", ("large", "high"): "rgba(44,160,44,0.10)",
             ("small", "low"): "rgba(255,127,14,0.10)", ("large", "low"): "rgba(214,39,40,0.10)"}
    for quadrant in QUADRANTS:
        x0, x1 = (low_x, split_x) if quadrant["size"] == "small" else (split_x, high_x)
        y0, y1 = (SIMILARITY_THRESHOLD, 1.0) if quadrant["similarity"] == "high" else (0.0, SIMILARITY_THRESHOLD)
        figure.add_shape(type="rect", x0=10 ** x0, x1=10 ** x1, y0=y0, y1=y1, line={"width": 0},
                         fillcolor=fills[(quadrant["size"], quadrant["similarity"])], layer="below")
        figure.add_annotation(x=(x0 + x1) / 2, y=y1 - 0.06, xref="x", yref="y",
                              text=f"<b>{quadrant['strategy']}</b><br><span style='font-size:11px'>"
                                   f"{quadrant['detail']}</span>", showarrow=False)
    if points is not None and len(points):
        for kind, group in points.groupby("kind", sort=False):
            figure.add_trace(go.Scatter(
                x=group["train_images"], y=group["similarity"], mode="markers", name=kind,
                marker={"size": 13, "color": KIND_COLORS.get(kind, "#333"),
                        "symbol": "circle" if kind == TRANSFER else "x", "line": {"width": 1}},
                text=[f"{row.label}<br>source: {row.source}<br>{title}: {row.score:.3f} "
                      f"(similarity {row.similarity:.2f})<br>accuracy: {_percent(row.accuracy)}"
                      f"<br>strategy that won here: {row.winner or 'n/a'} ({_percent(row.winner_accuracy)})"
                      for row in group.itertuples()],
                hovertemplate="%{text}<br>%{x:,} training images<extra></extra>"))
    figure.update_xaxes(type="log", range=[low_x, high_x], title="Labelled training images (log scale)")
    figure.update_yaxes(range=[0, 1], title=f"Similarity: {title}, normalised (0 = chance, 1 = perfect)")
    figure.update_layout(title=f"Which strategy? Dataset size × measured similarity ({title})", height=460,
                         margin={"t": 50, "b": 10}, legend={"orientation": "h", "y": -0.2})
    return figure


def transferability_scatter(points: pd.DataFrame, metric: str = "logme") -> go.Figure:
    """Score against the feature-extraction accuracy reached, one colour per dataset.

    The legend gives each dataset's Spearman rank correlation (does the score rank sources
    as training does?).
    """
    from core import transferability

    title = transferability.METRIC_TITLES[transferability.check_metric(metric)]
    figure = go.Figure()
    chosen = points[(points["strategy"] == "feature-extraction") & points["accuracy"].notna()] \
        if len(points) else points
    for index, (dataset, group) in enumerate(chosen.groupby("dataset", sort=False)):
        rho = (transferability.spearman(group["score"].tolist(), group["accuracy"].tolist())
               if len(group) >= 2 else float("nan"))
        name = f"{dataset} (Spearman ρ {rho:.2f}, {len(group)} runs)" if not math.isnan(rho) else f"{dataset} ({len(group)} runs)"
        figure.add_trace(go.Scatter(
            x=group["score"], y=group["accuracy"], mode="markers", name=name,
            marker={"size": 11, "color": PALETTE[index % len(PALETTE)]},
            text=[f"{row.source}<br>{row.label}" for row in group.itertuples()],
            hovertemplate=f"%{{text}}<br>{title} %{{x:.3f}}<br>accuracy %{{y:.3f}}<extra></extra>"))
    figure.update_xaxes(title=f"{title} of the source on the target data")
    figure.update_yaxes(title="Feature-extraction accuracy reached")
    figure.update_layout(title=f"Does {title} predict the accuracy transfer reaches?", height=400,
                         margin={"t": 50, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return figure


def data_efficiency_frame(summaries) -> pd.DataFrame:
    """Accuracy against training images for sweep and few-shot runs (scratch vs transfer).

    Only completed runs with a ``sweep_id`` or a few-shot ``experiment`` tag count; the accuracy
    is the test accuracy where the dataset has a test split, else the best validation accuracy.
    """
    rows = []
    for summary in summaries:
        config = summary.config
        if summary.state != "completed" or not (config.get("sweep_id") or config.get("experiment")):
            continue
        kind = run_kind(config)
        if kind not in (SCRATCH, TRANSFER):
            continue
        accuracy = summary.test_accuracy if summary.test_accuracy is not None else summary.best_val_accuracy
        images = _train_images(summary)
        if accuracy is None or not images:
            continue
        group = config.get("source") or config.get("model")
        rows.append({"run_id": summary.run_id, "dataset": summary.dataset, "group": group,
                     "kind": kind, "train_images": images, "accuracy": float(accuracy),
                     "metric": "test" if summary.test_accuracy is not None else "val"})
    return pd.DataFrame(rows, columns=["run_id", "dataset", "group", "kind", "train_images",
                                       "accuracy", "metric"])


def data_efficiency_figure(frame: pd.DataFrame) -> go.Figure:
    """Lines of accuracy against training images, one per (kind, dataset, group)."""
    figure = go.Figure()
    if len(frame):
        averaged = (frame.groupby(["dataset", "group", "kind", "train_images"], as_index=False)
                    ["accuracy"].mean().sort_values("train_images"))
        for (dataset, group, kind), part in averaged.groupby(["dataset", "group", "kind"], sort=False):
            figure.add_trace(go.Scatter(
                x=part["train_images"], y=part["accuracy"], mode="lines+markers",
                name=f"{kind} · {dataset} · {group}",
                line={"color": KIND_COLORS.get(kind), "dash": "solid" if kind == TRANSFER else "dot"}))
    figure.update_xaxes(type="log", title="Labelled training images (log scale)")
    figure.update_yaxes(title="Accuracy (test where available, else best validation)", rangemode="tozero")
    figure.update_layout(title="Data efficiency: transfer vs scratch", height=420,
                         margin={"t": 50, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return figure


def twin_key(summary) -> tuple:
    """What a scratch run and its transfer twin share: dataset, training size and group.

    The group is the sweep or few-shot experiment id when the run has one, so twins of one
    sweep pair with each other and never with a run of another sweep.
    """
    config = summary.config
    size = (config.get("labels_per_class"), _train_images(summary) if not config.get("labels_per_class")
            else None)
    group = config.get("sweep_id") or config.get("experiment_id")
    return summary.dataset, size, group


def default_selection(summaries) -> list[str]:
    """The newest scratch run and its transfer twin (same dataset, training size and sweep).

    Falls back to the two newest runs with metrics when no run has a twin: runs trained on
    different amounts of data are never paired as if they were comparable.

    Args:
        summaries: newest first (as ``core.runs.list_runs`` returns them).
    """
    usable = [summary for summary in summaries if not summary.broken and summary.epochs_done > 0]
    latest_scratch = {}
    for summary in usable:
        if run_kind(summary.config) == SCRATCH:
            latest_scratch.setdefault(twin_key(summary), summary)
    for summary in usable:  # newest first: the first transfer run with a twin wins
        if run_kind(summary.config) != TRANSFER:
            continue
        twin = latest_scratch.get(twin_key(summary))
        if twin is not None:
            return [twin.run_id, summary.run_id]
    return [summary.run_id for summary in usable[:2]]


def comparison_csv(table: pd.DataFrame, curves: pd.DataFrame | None = None) -> bytes:
    """The comparison as CSV: the per-run table, then (optionally) the long curves table."""
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    if curves is not None and len(curves):
        buffer.write("\n")
        curves.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


# --- PNG export with Pillow -----------------------------------------------------------------------

def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 10))
        value += step
    return ticks


def _draw_panel(draw, box, series, title: str, x_label: str, y_label: str) -> None:
    """Draws one line chart into ``box`` = (left, top, right, bottom)."""
    left, top, right, bottom = box
    title_font, font = _font(16), _font(12)
    draw.text((left + 60, top), title, fill="#222222", font=title_font)
    plot = (left + 60, top + 30, right - 10, bottom - 40)
    xs = [x for _, x_values, _ in series for x in x_values]
    ys = [y for _, _, y_values in series for y in y_values]
    if not xs:
        draw.text((plot[0] + 10, plot[1] + 10), "no data", fill="#666666", font=font)
        return
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if x_high == x_low:
        x_high = x_low + 1
    if y_high == y_low:
        y_high = y_low + 1e-3
    pad = (y_high - y_low) * 0.05
    y_low, y_high = y_low - pad, y_high + pad

    def to_pixel(x, y):
        px = plot[0] + (x - x_low) / (x_high - x_low) * (plot[2] - plot[0])
        py = plot[3] - (y - y_low) / (y_high - y_low) * (plot[3] - plot[1])
        return px, py

    draw.rectangle(plot, outline="#999999")
    for tick in _nice_ticks(y_low, y_high):
        _, py = to_pixel(x_low, tick)
        draw.line((plot[0], py, plot[2], py), fill="#eeeeee")
        draw.text((left + 5, py - 7), f"{tick:g}", fill="#444444", font=font)
    for tick in _nice_ticks(x_low, x_high):
        px, _ = to_pixel(tick, y_low)
        draw.line((px, plot[3], px, plot[3] + 4), fill="#999999")
        draw.text((px - 10, plot[3] + 6), f"{tick:g}", fill="#444444", font=font)
    draw.text(((plot[0] + plot[2]) / 2 - 40, bottom - 18), x_label, fill="#222222", font=font)
    draw.text((left + 5, top + 14), y_label, fill="#222222", font=font)
    for color, x_values, y_values in series:
        points = [to_pixel(x, y) for x, y in zip(x_values, y_values)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for px, py in points:
            draw.ellipse((px - 2.5, py - 2.5, px + 2.5, py + 2.5), fill=color)


def comparison_png(metrics_by_label: dict[str, pd.DataFrame], x_axis: str = "epoch",
                   width: int = 1400, height: int = 560) -> bytes:
    """Validation accuracy and loss of several runs side by side, as PNG bytes (Pillow only).

    Args:
        metrics_by_label: legend label -> metrics DataFrame.
        x_axis: ``"epoch"`` or ``"seconds"``.
        width, height: image size in pixels.
    """
    from PIL import Image, ImageDraw

    if x_axis not in X_AXES:
        raise ValueError(f"x_axis must be one of {tuple(X_AXES)}, received {x_axis!r}")
    frame = curves_frame(metrics_by_label)
    labels = list(dict.fromkeys(frame["label"])) if len(frame) else []
    legend_height = 24 * max(1, len(labels)) + 10
    image = Image.new("RGB", (width, height + legend_height), "white")
    draw = ImageDraw.Draw(image)
    half = width // 2
    for panel, metric in enumerate(("val_accuracy", "val_loss")):
        series = []
        for index, label in enumerate(labels):
            group = frame[frame["label"] == label].dropna(subset=[metric])
            series.append((PALETTE[index % len(PALETTE)], group[x_axis].tolist(), group[metric].tolist()))
        _draw_panel(draw, (panel * half + 10, 10, (panel + 1) * half - 10, height - 10), series,
                    METRIC_TITLES[metric], X_AXES[x_axis].split(" (")[0], "")
    font = _font(13)
    for index, label in enumerate(labels):
        y = height + 5 + 24 * index
        color = PALETTE[index % len(PALETTE)]
        draw.rectangle((70, y + 4, 100, y + 12), fill=color)
        draw.text((110, y), label, fill="#222222", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
