"""The Concepts page under AppTest: change the main widgets, check the values it shows."""

import base64
import io
import json

import numpy as np
import pytest

from core import concepts
from tests.conftest import run_page

PAGE = "pages/concepts.py"


def _metrics(app_test) -> dict:
    return {metric.label: metric.value for metric in app_test.metric}


def _figures(app_test) -> dict:
    """Plotly specs shown on the page, by their ``key``-independent titles."""
    figures = {}
    for element in app_test.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        title = spec["layout"].get("title", {}).get("text") or "pooling"
        figures[title.split(" (")[0]] = spec
    return figures


def _array(value) -> np.ndarray:
    """A Plotly spec array: a plain list or Plotly's typed-array form (base64 ``bdata``)."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return data.reshape([int(size) for size in str(value.get("shape", len(data))).split(",")])
    return np.array(value)


def _texts(elements) -> str:
    return "\n".join(element.value for element in elements)


@pytest.fixture
def app_test():
    app_test = run_page(PAGE)
    assert not app_test.exception, app_test.exception
    return app_test


def test_default_page_shows_lenet_numbers(app_test):
    metrics = _metrics(app_test)
    assert metrics["Output size"] == "28"  # (32 - 5 + 0) / 1 + 1
    assert metrics["Pooled size (max)"] == "14"
    assert metrics["Parameters"] == "61,706"
    assert metrics["Multiply-accumulates"] == "416,520"
    assert metrics["Output shape"] == "10"
    # the view starts mid-stack: C3 (rf 14, jump 2, start 7), centre unit (4, 4) sees 8..21
    assert metrics["Receptive field"] == "14×14"
    assert metrics["Input rows × columns seen"] == "8..21 × 8..21"
    assert app_test.latex[0].value.count("\\frac{32 - 5 + 2 \\cdot 0}{1} + 1") == 1
    assert "**13.5**" in _texts(app_test.info)  # the slide's misprint: 27 / (1 + 1)
    keras_table = app_test.dataframe[0].value
    assert keras_table["width output"].tolist() == ["28", "32"]
    stack = app_test.dataframe[2].value
    assert stack["receptive field"].tolist()[:5] == [5, 6, 14, 16, 32]
    assert stack["output shape"].tolist()[:5] == ["28×28×6", "14×14×6", "10×10×16", "5×5×16",
                                                  "1×1×120"]
    figures = _figures(app_test)
    lenet_trace = figures["Receptive field against depth"]["data"][0]
    assert lenet_trace["name"] == "LeNet-5" and _array(lenet_trace["y"]).tolist() == [5, 6, 14, 16, 32]


def test_stride_that_does_not_divide_warns_about_uncovered_columns(app_test):
    app_test.number_input(key="concepts_stride").set_value(2).run()
    assert not app_test.exception
    assert _metrics(app_test)["Output size"] == "14"  # floor(27 / 2) + 1
    warning = app_test.warning[0].value
    assert "27 is not divisible by S = 2" in warning
    assert "The last 1 column(s)" in warning and "1 of them are real input columns" in warning
    assert "\\left\\lfloor\\frac{27}{2}\\right\\rfloor + 1 = 14" in app_test.latex[0].value
    assert "**9**" in _texts(app_test.info)  # misprint 27 / 3


def test_height_width_padding_and_dilation(app_test):
    app_test.toggle(key="concepts_two_axes").set_value(True).run()
    app_test.number_input(key="concepts_height").set_value(20).run()
    app_test.number_input(key="concepts_padding").set_value(1).run()
    app_test.number_input(key="concepts_dilation").set_value(2).run()
    assert not app_test.exception
    # F' = 2·(5 − 1) + 1 = 9: (20 − 9 + 2)/1 + 1 = 14 and (32 − 9 + 2)/1 + 1 = 26
    assert _metrics(app_test)["Output size"] == "14×26"
    keras_table = app_test.dataframe[0].value
    assert keras_table["height output"].tolist() == ["12", "20"]
    assert keras_table["width padding added (before, after)"].tolist() == ["0, 0", "4, 4"]


def test_kernel_too_large_shows_the_received_values(app_test):
    app_test.number_input(key="concepts_kernel").set_value(40).run()
    assert not app_test.exception
    assert "size=32, kernel=40" in app_test.error[0].value


def test_pooling_mode_size_and_stride(app_test):
    app_test.selectbox(key="concepts_pool_mode").set_value("average").run()
    app_test.number_input(key="concepts_pool_size").set_value(3).run()
    app_test.number_input(key="concepts_pool_stride").set_value(3).run()
    assert not app_test.exception
    assert _metrics(app_test)["Pooled size (average)"] == "9"  # floor((28 − 3)/3) + 1
    assert any("the last 1 column(s) of the feature map" in warning.value
               for warning in app_test.warning)
    assert "would give 10" in _texts(app_test.caption)  # Keras 'same': ceil(28 / 3)


def test_preset_switch_to_vgg16(app_test):
    app_test.selectbox(key="concepts_preset").set_value("VGG16").run()
    assert not app_test.exception
    metrics = _metrics(app_test)
    assert metrics["Parameters"] == "138,357,544"
    assert metrics["Output shape"] == "1000"
    assert app_test.number_input(key="concepts_num_classes").value == 1000
    assert app_test.number_input(key="concepts_input_height").value == 224
    assert app_test.selectbox(key="concepts_rf_layer").value == "block3_pool"  # mid-stack
    assert metrics["Receptive field"] == "44×44" and metrics["Jump"] == "8"
    app_test.selectbox(key="concepts_rf_layer").set_value("block5_pool").run()
    metrics = _metrics(app_test)
    assert metrics["Receptive field"] == "212×212" and metrics["Jump"] == "32"
    # centre unit (3, 3) of the 7×7 map: 16 + 3·32 = 112 ± 106 → pixels 6..217
    assert metrics["Input rows × columns seen"] == "6..217 × 6..217"
    app_test.number_input(key="concepts_num_classes").set_value(2).run()
    assert _metrics(app_test)["Parameters"] == f"{138_357_544 - 1000 * 4097 + 2 * 4097:,}"


def test_lenet_for_gtsrb_and_an_input_too_small(app_test):
    app_test.number_input(key="concepts_num_classes").set_value(43).run()
    assert _metrics(app_test)["Parameters"] == f"{156 + 2416 + 48120 + 10164 + 85 * 43:,}"
    app_test.number_input(key="concepts_input_height").set_value(28).run()
    assert not app_test.exception
    assert "'C5'" in app_test.error[0].value and "size=4, kernel=5" in app_test.error[0].value


def test_receptive_field_layer_and_unit(app_test):
    app_test.selectbox(key="concepts_rf_layer").set_value("C1").run()
    assert _metrics(app_test)["Input rows × columns seen"] == "13..17 × 13..17"  # unit 13 of 28 sees 13..17
    app_test.selectbox(key="concepts_rf_layer").set_value("C3").run()
    app_test.number_input(key="concepts_rf_row").set_value(9).run()
    app_test.number_input(key="concepts_rf_col").set_value(2).run()
    assert not app_test.exception
    metrics = _metrics(app_test)
    # C3: rf 14, jump 2, start 7 → unit n sees 7 + 2n − 7 .. 7 + 2n + 6
    assert metrics["Receptive field"] == "14×14" and metrics["Jump"] == "2"
    assert metrics["Input rows × columns seen"] == "18..31 × 4..17"
    shape = _figures(app_test)["C3 unit"]["layout"]["shapes"][0]
    assert (shape["y0"], shape["y1"], shape["x0"], shape["x1"]) == (17.5, 31.5, 3.5, 17.5)


def test_playground_kernels_stride_and_padding(app_test):
    assert _metrics(app_test)["Feature map"] == "64×64"  # edge, stride 1, P = 1
    app_test.selectbox(key="concepts_kernel_name").set_value("blur").run()
    app_test.number_input(key="concepts_play_stride").set_value(2).run()
    app_test.number_input(key="concepts_play_padding").set_value(0).run()
    assert not app_test.exception
    metrics = _metrics(app_test)
    assert metrics["Feature map"] == "31×31"  # floor((64 − 3)/2) + 1
    assert metrics["Pooled map"] == "15×15"
    figures = _figures(app_test)
    grey = concepts.to_grayscale(concepts.sample_image(concepts.SAMPLE_IMAGE_SIZE))
    expected = concepts.convolve2d(grey, concepts.KERNELS["blur"], 2, 0)
    np.testing.assert_allclose(_array(figures["Feature map"]["data"][0]["z"]), expected)
    pooled = figures["pooling"]["data"]
    np.testing.assert_allclose(_array(pooled[0]["z"]), concepts.pool2d(expected, 2, 2, "max"))
    np.testing.assert_allclose(_array(pooled[1]["z"]),
                               concepts.pool2d(expected, 2, 2, "average"))
    app_test.selectbox(key="concepts_play_padding_mode").set_value("same (Keras)").run()
    assert _metrics(app_test)["Feature map"] == "32×32"  # ceil(64 / 2)
    padded = _figures(app_test)["Zero-padded input"]
    assert padded["layout"]["title"]["text"] == "Zero-padded input (65×65)"  # Keras pads 0 + 1
    assert padded["layout"]["shapes"][0]["x0"] == -0.5  # nothing before, one column after


def test_playground_custom_kernel(app_test):
    app_test.selectbox(key="concepts_kernel_name").set_value("custom").run()
    app_test.radio(key="concepts_custom_size").set_value(5).run()
    assert not app_test.exception
    figures = _figures(app_test)
    kernel = _array(figures["Kernel"]["data"][0]["z"])
    assert kernel.shape == (5, 5) and kernel[2, 2] == 1 and kernel.sum() == 1  # identity start
    grey = concepts.to_grayscale(concepts.sample_image(concepts.SAMPLE_IMAGE_SIZE))
    feature_map = _array(figures["Feature map"]["data"][0]["z"])
    # identity 5×5 with P = 1: output (i, j) is input (i + 1, j + 1), one pixel lost per side
    np.testing.assert_allclose(feature_map, grey[1:-1, 1:-1])
    assert _metrics(app_test)["Feature map"] == "62×62"
    app_test.radio(key="concepts_image_source").set_value("upload").run()
    assert not app_test.exception
    assert "Feature map" not in _metrics(app_test)  # nothing to convolve until a file arrives
    assert "Choose a picture" in _texts(app_test.info)


def test_playground_uses_an_uploaded_picture(app_test):
    from PIL import Image

    picture = np.zeros((40, 200, 3), dtype=np.uint8)
    picture[:, 100:] = 255  # one vertical edge
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    app_test.radio(key="concepts_image_source").set_value("upload").run()
    app_test.file_uploader(key="concepts_upload").set_value(("edge.png", buffer.getvalue(),
                                                              "image/png")).run()
    assert not app_test.exception
    # shrunk to 96 pixels wide (19×96); edge kernel, stride 1, P = 1 keeps the size
    assert _metrics(app_test)["Feature map"] == "19×96"
    feature_map = _array(_figures(app_test)["Feature map"]["data"][0]["z"])
    columns_with_response = np.flatnonzero(np.abs(feature_map[5:-5]).max(axis=0) > 0.5)
    # the picture's edge, and the white side against the zero-padding
    assert set(columns_with_response) == {47, 48, 95}
    app_test.file_uploader(key="concepts_upload").set_value(("notes.png", b"not a picture",
                                                              "image/png")).run()
    assert not app_test.exception
    assert "This file is not an image we can read" in app_test.error[0].value  # core.imaging


def _table_with(app_test, column: str):
    """The displayed table holding ``column`` (display-only dataframes carry no key in AppTest)."""
    return next(table.value for table in app_test.dataframe if column in table.value.columns)


def test_partial_c3_table_switches_the_lenet_count_and_is_checked_with_keras(app_test):
    metrics = _metrics(app_test)
    assert metrics["C3 fully connected"] == "2,416 parameters"
    assert metrics["C3 with table I"] == "1,516 parameters"
    table_figure = json.loads(app_test.get("plotly_chart")[[
        json.loads(chart.proto.spec)["layout"].get("title", {}).get("text", "").startswith("C3 maps")
        for chart in app_test.get("plotly_chart")].index(True)].proto.spec)
    cells = table_figure["data"][0]["text"]
    assert sum(cell == "X" for row in cells for cell in row) == 60
    assert [cells[row][12] for row in range(6)] == ["X", "X", "", "X", "X", ""]
    app_test.toggle(key="concepts_partial_c3").set_value(True).run()
    assert not app_test.exception
    assert _metrics(app_test)["Parameters"] == "60,806"  # 61,706 − (2,416 − 1,516)
    stack = _table_with(app_test, "layer")
    assert dict(zip(stack["layer"], stack["parameters"]))["C3"] == 1516
    app_test.button(key="concepts_c3_keras_check").click().run()
    assert not app_test.exception
    assert "`PartialConv2D` with table I 1,516" in app_test.success[0].value
    assert "`Conv2D(16, 5)` 2,416" in app_test.success[0].value


def test_strided_tab_compares_pooling_with_strided_convolutions(app_test):
    table = _table_with(app_test, "variant")
    rows = table.set_index("variant")
    assert list(rows["output size"]) == ["16×16×96"] * 3
    assert list(rows["receptive field"]) == [7, 7, 5]
    assert list(rows["parameters added"]) == [0, 83_040, 0]
    assert any("Striving for simplicity" in caption.value for caption in app_test.caption)
    app_test.number_input(key="concepts_strided_pool_stride").set_value(1).run()
    app_test.number_input(key="concepts_strided_filters").set_value(8).run()
    assert not app_test.exception
    rows = _table_with(app_test, "variant").set_index("variant")
    assert list(rows["output size"]) == ["32×32×8"] * 3
    assert list(rows["receptive field"]) == [7, 7, 5]
    assert list(rows["parameters added"]) == [0, 3 * 3 * 8 * 8 + 8, 0]
