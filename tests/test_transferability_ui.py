"""The transferability panel (``ui.transferability``) under ``streamlit.testing`` AppTest."""

from __future__ import annotations

import math

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import transferability as tr
from tests.conftest import install_dogs_vs_cats

IMAGES_PER_CLASS = 20


def _panel_app():
    from ui.transferability import transferability_panel

    transferability_panel("dogs-vs-cats", "test")


def test_panel_says_when_the_dataset_is_missing(isolated_roots):
    app = AppTest.from_function(_panel_app, default_timeout=60).run()
    assert not app.exception
    assert "not installed here" in app.info[0].value


def test_panel_ranks_scored_sources_and_recommends_a_strategy_for_the_dataset_size(isolated_roots, tmp_path):
    install_dogs_vs_cats(isolated_roots["data"], IMAGES_PER_CLASS)
    app = AppTest.from_function(_panel_app, default_timeout=240).run()
    assert not app.exception
    assert app.multiselect(key="test_transferability_sources").value == ["random:mobilenetv2", "random:mobilenet"]
    app.multiselect(key="test_transferability_sources").set_value(["random:mobilenet"])
    app.select_slider(key="test_transferability_images").set_value(100)
    app.selectbox(key="test_transferability_metric").set_value("leep")
    app.run()
    assert app.button(key="test_transferability_run").label == "Score 1 source(s) on 100 images"
    app.button(key="test_transferability_run").click().run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    cached = tr.cached_score("random:mobilenet", "dogs-vs-cats", "leep", 100)
    assert table["source"].tolist() == ["random:mobilenet"]
    assert table["images"].tolist() == [cached["num_images"]] and cached["num_images"] >= 4
    # An untrained network's 1,000-way softmax is uniform, so LEEP is the log-likelihood of the
    # class prior: similarity 0.
    assert table["score"].iloc[0] == cached["score"]
    prior = np.asarray(cached["class_fractions"])
    assert math.isclose(table["score"].iloc[0], float(np.sum(prior * np.log(prior))), abs_tol=1e-3)
    assert table["similarity"].iloc[0] == pytest.approx(0.0, abs=1e-4)
    recommendation = app.success[0].value
    assert "best source **random:mobilenet**" in recommendation
    assert "recommends **Features from earlier layers**" in recommendation  # small data, low similarity
    app.run()  # the next run reads the cache: nothing left to score
    assert not [button for button in app.button if button.key == "test_transferability_run"]
    assert app.dataframe[0].value["score"].iloc[0] == cached["score"]
