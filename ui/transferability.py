"""Streamlit helpers for transferability scores (``core.transferability``).

* ``transferability_panel(dataset, key_prefix)``: the Transfer page's "How transferable is each
  source to this dataset?" table, with the strategy the study recommends for the dataset's size.
* ``quadrant_section(summaries, key_prefix)``: the Compare page's size × measured-similarity
  chart and the score-against-accuracy scatter.

Scores are computed in the script run (a forward pass over a few hundred images: seconds to a
minute per source on a CPU) with a progress bar, and cached on disk by ``core.transferability``;
the tables only read that cache.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import paths
from core import transferability as tr
from core.charts import compare as charts

SOURCES_TTL_SECONDS = 10
MAX_IMAGES_CHOICES = (100, 200, 400, 800)
EXPLANATION = (
    "Each score is computed from one pass of the source network over a sample of this dataset's "
    "training images, before any training: **LogME** (You et al. 2021) is the evidence of a "
    "Bayesian linear classifier on the source's features, **LEEP** (Nguyen et al. 2020) how well "
    "the source's own classes predict the labels, **H-score** (Bao et al. 2019) how much of the "
    "features' variance the labels explain. Higher = more transferable. *Similarity* is the "
    "score rescaled to 0 (a source that knows nothing) … 1 (perfect). `random:` sources are "
    "untrained networks: the control every real source should beat."
)


@st.cache_data(ttl=SOURCES_TTL_SECONDS, show_spinner=False)
def _available_sources(runs_root: str, data_root: str) -> list[str]:
    return tr.available_sources(runs_root)


def available_sources() -> list[str]:
    """Sources that can be scored here (cached for a few seconds)."""
    return _available_sources(str(paths.runs_dir()), str(paths.data_dir()))


def _default_sources(sources: list[str]) -> list[str]:
    chosen = [source for source in sources if not source.startswith(tr.RUN_PREFIX)]
    return chosen or sources[:3]


def _training_images(dataset: str) -> int | None:
    from core.datasets import registry

    counts = registry.split_counts(dataset).get("counts", {}).get("train")
    return int(sum(counts)) if counts else None


def scores_table(sources: list[str], dataset: str, metric: str, max_images: int) -> pd.DataFrame:
    """Cached scores of ``sources`` (best first; ``score`` None where not computed yet)."""
    rows = []
    for source in sources:
        details = tr.cached_score(source, dataset, metric, max_images) or {}
        rows.append({"source": source, "score": details.get("score"),
                     "similarity": details.get("normalised"), "images": details.get("num_images"),
                     "seconds": details.get("seconds")})
    table = pd.DataFrame(rows, columns=["source", "score", "similarity", "images", "seconds"])
    return table.sort_values("score", ascending=False, na_position="last").reset_index(drop=True)


def compute_scores(sources: list[str], dataset: str, metric: str, max_images: int) -> list[dict]:
    """Scores every source with a progress bar; returns ``rank_sources``' rows."""
    bar = st.progress(0.0, text=f"Scoring {len(sources)} source(s)…")

    def report(fraction: float, text: str) -> None:
        bar.progress(min(max(fraction, 0.0), 1.0), text=text)

    rows = tr.rank_sources(sources, dataset, metric, max_images, progress=report)
    bar.empty()
    return rows


def transferability_panel(dataset: str, key_prefix: str) -> None:
    """"How transferable is each source to this dataset?": ranked sources and the recommendation.

    Args:
        dataset: the target dataset (``dogs-vs-cats``, ``gtsrb``, ``synthetic-signs``).
        key_prefix: prefix of every widget key (one panel per page).
    """
    from core.datasets import registry

    st.markdown("#### How transferable is each source to this dataset?")
    st.caption(EXPLANATION)
    if registry.status(dataset) != "ready":
        st.info(f"{registry.get_info(dataset).title} is not installed here: install it on the "
                "**Datasets** page to score sources on it.", icon=":material/info:")
        return
    sources = available_sources()
    left, middle, right = st.columns([1, 1, 2])
    with left:
        metric = st.selectbox("Score", tr.METRICS, key=f"{key_prefix}_transferability_metric",
                              format_func=lambda name: tr.METRIC_TITLES[name])
    with middle:
        max_images = st.select_slider("Images scored", MAX_IMAGES_CHOICES, value=tr.DEFAULT_MAX_IMAGES,
                                      key=f"{key_prefix}_transferability_images")
    with right:
        chosen = st.multiselect("Sources", sources, default=_default_sources(sources),
                                key=f"{key_prefix}_transferability_sources",
                                help="Installed ImageNet backbones, untrained controls and finished runs.")
    if not chosen:
        st.info("Pick at least one source.", icon=":material/info:")
        return
    table = scores_table(chosen, dataset, metric, max_images)
    missing = table.loc[table["score"].isna(), "source"].tolist()
    if missing and st.button(f"Score {len(missing)} source(s) on {max_images} images",
                             key=f"{key_prefix}_transferability_run", icon=":material/speed:"):
        for row in compute_scores(missing, dataset, metric, max_images):
            if row.get("score") is None:
                st.error(f"{row['source']}: {row['error']}", icon=":material/error:")
        table = scores_table(chosen, dataset, metric, max_images)
    st.dataframe(
        table, hide_index=True, key=f"{key_prefix}_transferability_table",
        column_config={
            "score": st.column_config.NumberColumn(tr.METRIC_TITLES[metric], format="%.4f"),
            "similarity": st.column_config.ProgressColumn(
                "Similarity (normalised)", min_value=0.0, max_value=1.0, format="%.2f"),
            "seconds": st.column_config.NumberColumn("Seconds", format="%.1f"),
        })
    images = _training_images(dataset)
    scored = table.dropna(subset=["similarity"])
    if images and len(scored):
        best = scored.iloc[0]
        strategy = charts.recommended_strategy(images, float(best["similarity"]))
        size = "small" if images < charts.SMALL_DATASET_LIMIT else "large"
        st.success(f"{images:,} labelled training images ({size}); best source **{best['source']}** "
                   f"(similarity {best['similarity']:.2f} by {tr.METRIC_TITLES[metric]}): the study's "
                   f"chart recommends **{strategy}**.", icon=":material/lightbulb:")
    elif images:
        st.caption(f"{images:,} labelled training images: score the sources to get the recommendation.")


def quadrant_section(summaries, key_prefix: str = "compare") -> None:
    """The size × measured-similarity quadrant for ``summaries`` and the score/accuracy scatter."""
    metric = st.radio("Similarity measured by", tr.METRICS, key=f"{key_prefix}_quadrant_metric",
                      horizontal=True, format_func=lambda name: tr.METRIC_TITLES[name])
    pairs = charts.quadrant_pairs(summaries)
    missing = [pair for pair in pairs
               if tr.cached_score(pair[0], pair[1], metric, classes=pair[2]) is None]
    if missing and st.button(f"Measure {len(missing)} source/dataset pair(s) "
                             f"({tr.METRIC_TITLES[metric]}, {tr.DEFAULT_MAX_IMAGES} images)",
                             key=f"{key_prefix}_quadrant_measure", icon=":material/speed:"):
        bar = st.progress(0.0, text="Measuring…")
        for index, (source, dataset, classes) in enumerate(missing):
            def report(fraction: float, text: str, index=index) -> None:
                bar.progress(min((index + fraction) / len(missing), 1.0), text=text)

            try:
                tr.score(source, dataset, metric, classes=classes, progress=report)
            except (ValueError, RuntimeError, OSError) as error:
                st.error(f"{source} on {dataset}: {error}", icon=":material/error:")
        bar.empty()
        missing = [pair for pair in missing
                   if tr.cached_score(pair[0], pair[1], metric, classes=pair[2]) is None]
    points = charts.quadrant_points(summaries, metric)
    st.plotly_chart(charts.quadrant_figure(points, metric), key=f"{key_prefix}_quadrant", width="stretch")
    if missing:
        st.caption("Not placed yet (no score measured): " + ", ".join(
            f"{source} → {dataset}" for source, dataset, _ in missing))
    if len(points):
        st.caption(" · ".join(
            f"{row.label}: {row.train_images:,} images, {tr.METRIC_TITLES[metric]} {row.score:.3f} "
            f"(similarity {row.similarity:.2f}) → {charts.recommended_strategy(row.train_images, row.similarity)}"
            for row in points.itertuples()))
        extraction = points[(points["strategy"] == "feature-extraction") & points["accuracy"].notna()]
        if len(extraction) >= 2:
            st.plotly_chart(charts.transferability_scatter(points, metric),
                            key=f"{key_prefix}_transferability_scatter", width="stretch")
