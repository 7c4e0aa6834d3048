"""AppTest: the Data & weights page's ImageNet section, and 'what ImageNet already sees'."""

from __future__ import annotations

import pytest

from core import weights
from tests.conftest import run_page

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    """weights=None MobileNet v1 (alpha 0.25) files, no top and with top."""
    folder = tmp_path_factory.mktemp("page-weights")
    files = {}
    for variant, include_top in (("no_top", False), ("top", True)):
        files[variant] = folder / f"mobilenet_{variant}.weights.h5"
        keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.25, include_top=include_top,
                                     weights=None).save_weights(files[variant])
    return files


def test_upload_installs_a_good_file_and_refuses_a_bad_one(small_weights, isolated_roots):
    app = run_page("pages/datasets.py")
    assert not app.exception
    app.selectbox(key="weights_backbone").set_value("mobilenet").run()
    app.file_uploader(key="weights_upload").set_value(
        [("not-weights.h5", b"\x89HDF\r\n garbage", "application/octet-stream")]).run()
    app.button(key="weights_import").click().run()
    assert not app.exception
    assert any("Refused" in error.value and "not-weights.h5" in error.value for error in app.error)
    assert weights.installed("mobilenet") is None
    assert not any((isolated_roots["data"] / "weights" / ".staging").iterdir())
    app.file_uploader(key="weights_upload").set_value(
        [("mobilenet_no_top.weights.h5", small_weights["no_top"].read_bytes(), "application/octet-stream")]).run()
    app.button(key="weights_import").click().run()
    assert not app.exception
    assert any("Installed mobilenet no_top (alpha 0.25" in success.value for success in app.success)
    entry = weights.installed("mobilenet")
    assert entry["source"] == "upload mobilenet_no_top.weights.h5"
    assert not any((isolated_roots["data"] / "weights" / ".staging").iterdir())


def test_what_imagenet_sees_lists_five_imagenet_classes(small_weights, isolated_roots):
    from streamlit.testing.v1 import AppTest

    def script():
        import numpy as np

        from ui import imagenet

        image = np.full((60, 80, 3), 120, dtype=np.uint8)
        imagenet.imagenet_top_k(image, "probe")

    app = AppTest.from_function(script, default_timeout=120).run()
    assert any("install a backbone's with-top weights" in caption.value for caption in app.caption)
    weights.import_file("mobilenet", small_weights["top"])
    app = AppTest.from_function(script, default_timeout=120).run()
    assert not app.exception
    text = " ".join(block.value for block in app.markdown)
    assert "What ImageNet already sees" in text and "mobilenet" in text
    assert text.count("%") == 5
