"""core.concepts and core.charts.concepts, checked against real Keras layers and brute force."""

import io

import numpy as np
import pytest

from core import concepts
from core.charts import concepts as charts

NUM_RANDOM_CONFIGS = 40
SEED = 20240611
VGG16_KERAS_PARAMS = 138_357_544  # keras.applications.VGG16(weights=None).count_params()


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _random_conv_configs(count=NUM_RANDOM_CONFIGS, seed=SEED):
    """Seeded (height, width, kernel, stride, padding, dilation) configurations that fit."""
    rng = np.random.default_rng(seed)
    configs = []
    while len(configs) < count:
        kernel = int(rng.integers(1, 6))
        dilation = int(rng.choice([1, 1, 2, 3]))
        padding = rng.choice([0, 1, 2, 3, "valid", "same", "same"]).item()
        stride = int(rng.integers(1, 4))
        height, width = (int(value) for value in rng.integers(3, 17, size=2))
        if isinstance(padding, str) and padding.isdigit():
            padding = int(padding)
        if padding == "same" and dilation > 1:
            stride = 1  # TensorFlow refuses strides > 1 with dilation > 1
        effective = dilation * (kernel - 1) + 1
        pad = padding if isinstance(padding, int) else 0
        if padding != "same" and effective > min(height, width) + 2 * pad:
            continue
        configs.append((height, width, kernel, stride, padding, dilation))
    return configs


# ------------------------------------------------------------------------------- output sizes


@pytest.mark.parametrize(
    "arguments, expected",
    [((32, 5), 28), ((224, 3, 1, 1), 224), ((7, 3, 2), 3), ((8, 3, 2, 1), 4), ((32, 3, 1, 0, 2), 28),
     ((227, 11, 4), 55), ((5, 5), 1), ((1, 3, 1, 1), 1)],
)
def test_conv_output_size_examples(arguments, expected):
    assert concepts.conv_output_size(*arguments) == expected


@pytest.mark.parametrize(
    "arguments, fragment",
    [((0, 3), "size"), ((8, 0), "kernel"), ((8, 3, 0), "stride"), ((8, 3, 1, -1), "padding"),
     ((8, 3, 1, 0, 0), "dilation"), ((8.5, 3), "8.5"), ((True, 3), "True"), (("8", 3), "'8'")],
)
def test_conv_output_size_rejects_bad_values(arguments, fragment):
    with pytest.raises(ValueError, match=fragment):
        concepts.conv_output_size(*arguments)


def test_conv_output_size_names_the_values_when_the_kernel_does_not_fit():
    with pytest.raises(ValueError) as error:
        concepts.conv_output_size(6, 3, stride=1, padding=0, dilation=3)
    message = str(error.value)
    for fragment in ("size=6", "kernel=3", "stride=1", "padding=0", "dilation=3", "spans 7"):
        assert fragment in message


def test_output_size_report_substitutes_the_numbers_and_the_misprint():
    report = concepts.output_size_report(32, 5, 1, 0)
    assert report["output_size"] == 28
    assert report["formula"].startswith("(32 − 5 + 2·0) / 1 + 1 = 27/1 + 1 = 28")
    assert "27" in report["formula_latex"]
    assert report["misprint"] == pytest.approx(13.5)  # (32 - 5 + 0) / (1 + 1)
    assert report["divisible"] and report["uncovered"] == 0


def test_output_size_report_counts_the_never_covered_columns_by_brute_force():
    rng = np.random.default_rng(SEED)
    for _ in range(200):
        size, kernel = int(rng.integers(1, 30)), int(rng.integers(1, 6))
        stride, padding, dilation = int(rng.integers(1, 5)), int(rng.integers(0, 3)), int(rng.integers(1, 3))
        effective = dilation * (kernel - 1) + 1
        if effective > size + 2 * padding:
            continue
        report = concepts.output_size_report(size, kernel, stride, padding, dilation)
        padded = size + 2 * padding
        covered = np.zeros(padded, dtype=bool)
        position = 0
        while position + effective <= padded:  # every window the layer slides over
            covered[position:position + effective] = True
            position += stride
        last_covered = np.flatnonzero(covered).max()
        uncovered_tail = padded - 1 - last_covered
        input_columns = np.arange(padded)[padding:padding + size]
        assert report["output_size"] == (position // stride)
        assert report["uncovered"] == uncovered_tail
        assert report["uncovered_input"] == int(np.sum(input_columns > last_covered))
        assert report["divisible"] == (uncovered_tail == 0)


def test_output_size_report_warns_about_an_uncovered_input_column():
    report = concepts.output_size_report(32, 5, 2, 0)
    assert (report["output_size"], report["uncovered"], report["uncovered_input"]) == (14, 1, 1)
    assert "⌊27/2⌋ + 1 = 14" in report["formula"]


def test_keras_presets_follow_the_documented_rules():
    assert concepts.keras_output_size(32, 5, 2, "valid") == 14  # floor((32 - 5) / 2) + 1
    assert concepts.keras_output_size(32, 5, 2, "same") == 16  # ceil(32 / 2)
    assert concepts.keras_output_size(7, 3, 1, "valid", dilation=2) == 3
    assert concepts.keras_padding_amounts(32, 5, 2, "same") == (1, 2)
    assert concepts.pooling_output_size(28, 2) == 14
    assert concepts.pooling_output_size(7, 2, padding="same") == 4
    with pytest.raises(ValueError, match="'full'"):
        concepts.keras_output_size(32, 5, 1, "full")
    with pytest.raises(ValueError, match="size=3"):
        concepts.keras_output_size(3, 5, 1, "valid")


def test_random_convolutions_match_keras_conv2d_shapes_and_values(keras):
    rng = np.random.default_rng(SEED + 1)
    for height, width, kernel, stride, padding, dilation in _random_conv_configs():
        image = rng.normal(size=(height, width))
        weights = rng.normal(size=(kernel, kernel))
        ours = concepts.convolve2d(image, weights, stride, padding, dilation)

        keras_stride = 1 if (dilation > 1 and padding != "same") else stride
        inputs = image[None, :, :, None].astype("float32")
        if isinstance(padding, int):
            inputs = keras.layers.ZeroPadding2D(padding)(inputs)
        layer = keras.layers.Conv2D(1, kernel, strides=keras_stride, dilation_rate=dilation,
                                    padding="same" if padding == "same" else "valid", use_bias=False)
        layer.build((1, *inputs.shape[1:3], 1))
        layer.set_weights([weights[:, :, None, None].astype("float32")])
        theirs = keras.ops.convert_to_numpy(layer(inputs))[0, :, :, 0]
        # TensorFlow refuses strides with dilation: stride 1 then subsampling is the same maths.
        theirs = theirs[::stride // keras_stride, ::stride // keras_stride]

        config = (height, width, kernel, stride, padding, dilation)
        if isinstance(padding, int):
            expected_shape = tuple(concepts.conv_output_size(size, kernel, stride, padding, dilation)
                                   for size in (height, width))
        else:
            expected_shape = tuple(concepts.keras_output_size(size, kernel, stride, padding, dilation)
                                   for size in (height, width))
            keras_shape = keras.layers.Conv2D(1, kernel, strides=keras_stride, padding=padding,
                                              dilation_rate=dilation).compute_output_shape(
                (1, height, width, 1))
            if keras_stride == stride:
                assert tuple(keras_shape[1:3]) == expected_shape, config
        assert ours.shape == expected_shape == theirs.shape, config
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4, err_msg=str(config))


def test_random_poolings_match_keras_max_and_average_pooling(keras):
    rng = np.random.default_rng(SEED + 2)
    for _ in range(NUM_RANDOM_CONFIGS):
        height, width = (int(value) for value in rng.integers(3, 14, size=2))
        pool_size = int(rng.integers(1, 4))
        stride = int(rng.integers(1, 4))
        padding = str(rng.choice(concepts.KERAS_PADDINGS))
        values = rng.normal(size=(height, width))
        inputs = values[None, :, :, None].astype("float32")
        for mode, layer_class in (("max", keras.layers.MaxPooling2D),
                                  ("average", keras.layers.AveragePooling2D)):
            layer = layer_class(pool_size, strides=stride, padding=padding)
            theirs = keras.ops.convert_to_numpy(layer(inputs))[0, :, :, 0]
            ours = concepts.pool2d(values, pool_size, stride, mode, padding)
            config = (height, width, pool_size, stride, padding, mode)
            assert ours.shape == theirs.shape, config
            assert ours.shape == tuple(concepts.pooling_output_size(size, pool_size, stride, padding)
                                       for size in (height, width)), config
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5, err_msg=str(config))


def test_pool2d_and_convolve2d_reject_bad_input():
    with pytest.raises(ValueError, match="'median'"):
        concepts.pool2d(np.ones((4, 4)), mode="median")
    with pytest.raises(ValueError, match="padding"):
        concepts.pool2d(np.ones((4, 4)), padding=1)
    with pytest.raises(ValueError, match="does not fit"):
        concepts.convolve2d(np.ones((4, 4)), np.ones((5, 5)))
    with pytest.raises(ValueError, match="square"):
        concepts.convolve2d(np.ones((4, 4)), np.ones((3, 2)))


# ---------------------------------------------------------------------------- receptive fields


def test_receptive_field_reference_values():
    vgg = [layer for layer in concepts.vgg16_stack() if layer["type"] != "dense"]
    fields = concepts.receptive_field(vgg)
    assert fields[-1]["rf"] == 212 and fields[-1].jump == 32
    assert [field.rf for field in fields] == [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100,
                                              132, 164, 196, 212]
    lenet = [layer for layer in concepts.lenet5_stack() if layer["type"] != "dense"]
    fields = concepts.receptive_field(lenet)
    assert [field["rf"] for field in fields] == [5, 6, 14, 16, 32]
    assert [field["jump"] for field in fields] == [1, 2, 2, 4, 4]
    assert [field["start"] for field in fields] == [2.5, 3.0, 7.0, 8.0, 16.0]


def test_receptive_field_defaults_and_errors():
    fields = concepts.receptive_field([{"kernel": 3}, {"kernel": 2, "stride": 2}])
    assert fields == [{"rf": 3, "jump": 1, "start": 1.5}, {"rf": 4, "jump": 2, "start": 2.0}]
    assert concepts.receptive_field([]) == []
    with pytest.raises(ValueError, match="kernel"):
        concepts.receptive_field([{"stride": 2}])
    with pytest.raises(ValueError, match="-1"):
        concepts.receptive_field([{"kernel": 3, "padding": -1}])
    with pytest.raises(AttributeError):
        _ = concepts.receptive_field([{"kernel": 3}])[0].missing


def _random_stack(rng, depth):
    layers = []
    for _ in range(depth):
        kernel = int(rng.integers(1, 5))
        layers.append({"kernel": kernel, "stride": int(rng.integers(1, 3)),
                       "padding": int(rng.integers(0, kernel)), "dilation": int(rng.integers(1, 3))})
    return layers


def test_receptive_field_matches_brute_force_index_sets():
    rng = np.random.default_rng(SEED + 3)
    for _ in range(NUM_RANDOM_CONFIGS):
        layers = _random_stack(rng, int(rng.integers(1, 6)))
        fields = concepts.receptive_field(layers)
        for unit in (0, 3):
            seen = {unit}  # indices, in the current layer's input, that feed the unit
            for depth in range(len(layers) - 1, -1, -1):
                layer = layers[depth]
                seen = {index * layer["stride"] - layer["padding"] + tap * layer["dilation"]
                        for index in seen for tap in range(layer["kernel"])}
                # `seen` is now in input coordinates of layer `depth`; walk down to the image.
            first, last = min(seen), max(seen)
            field = fields[-1]
            assert field["rf"] == last - first + 1, layers
            assert field["start"] + unit * field["jump"] == pytest.approx((first + last + 1) / 2)
            assert concepts.receptive_window(field, unit) == (first, last)
        assert fields[-1]["jump"] == int(np.prod([layer["stride"] for layer in layers]))


def _impulse_response_window(keras, layers, input_size, unit):
    """Which input pixels reach output unit (unit, unit) of a real Keras stack (clipped)."""
    linear = [dict(layer, filters=1, activation="linear") if layer["type"] == "conv" else layer
              for layer in layers]
    model = concepts.build_keras_model(linear, (input_size, input_size, 1))
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([np.ones_like(kernel), np.zeros_like(bias)])
    impulses = np.zeros((input_size, input_size, input_size, 1), dtype="float32")
    impulses[np.arange(input_size), np.arange(input_size), np.arange(input_size), 0] = 1.0
    responses = keras.ops.convert_to_numpy(model(impulses))[:, unit, unit, 0]
    reached = np.flatnonzero(responses > 0)
    return int(reached.min()), int(reached.max())


@pytest.mark.parametrize("preset, unit", [("LeNet-5", 0), ("LeNet-5", 3), ("VGG16", 3)])
def test_receptive_field_matches_impulse_responses_of_real_keras_stacks(keras, preset, unit):
    layers, input_shape = concepts.preset_stack(preset)
    spatial = [layer for layer in layers if layer["type"] != "dense"]
    analysis = concepts.analyze_stack(spatial, (input_shape[0], input_shape[1], 1))
    # LeNet's C5 has one unit; unit 3 is measured at S4 (5×5) instead.
    depth = len(spatial) if analysis[-1]["output_shape"][0] > unit else len(spatial) - 1
    window = concepts.receptive_window(analysis[depth - 1], unit)
    clipped = (max(window[0], 0), min(window[1], input_shape[0] - 1))
    assert _impulse_response_window(keras, spatial[:depth], input_shape[0], unit) == clipped
    if preset == "VGG16":
        assert window == clipped and window[1] - window[0] + 1 == 212  # fully inside 224


def test_receptive_field_matches_impulse_responses_with_dilation_and_padding(keras):
    rng = np.random.default_rng(SEED + 4)
    for _ in range(4):
        layers = []
        for index, raw in enumerate(_random_stack(rng, 3)):
            kind = "conv" if raw["stride"] == 1 or raw["dilation"] == 1 else "max_pool"
            if kind == "max_pool":
                raw = dict(raw, dilation=1)
            layers.append(dict(raw, name=f"layer{index}", type=kind, filters=1, activation="linear"))
        size = 24
        analysis = concepts.analyze_stack(layers, (size, size, 1))
        unit = min(2, analysis[-1]["output_shape"][0] - 1)
        first, last = concepts.receptive_window(analysis[-1], unit)
        assert _impulse_response_window(keras, layers, size, unit) == (max(first, 0),
                                                                        min(last, size - 1)), layers


# -------------------------------------------------------------------------------- layer stacks


def _check_against_keras(keras, layers, input_shape):
    analysis = concepts.analyze_stack(layers, input_shape)
    model = concepts.build_keras_model(layers, input_shape)
    assert model.count_params() == concepts.stack_totals(analysis)["params"]
    by_name = {layer.name: layer for layer in model.layers}
    for row in analysis:
        keras_layer = by_name[row["name"]]
        assert tuple(keras_layer.output.shape[1:]) == row["output_shape"], row["name"]
        assert keras_layer.count_params() == row["params"], row["name"]
        if row["type"] in ("conv", "dense"):
            weights_per_output = int(np.prod(keras_layer.kernel.shape))
            positions = int(np.prod(row["output_shape"][:-1])) if row["type"] == "conv" else 1
            assert row["macs"] == weights_per_output * positions, row["name"]
        else:
            assert row["macs"] == 0
    return analysis, model


@pytest.mark.parametrize("num_classes", [10, 43])
def test_lenet5_matches_keras_count_params(keras, num_classes):
    layers, input_shape = concepts.preset_stack("LeNet-5", num_classes)
    analysis, model = _check_against_keras(keras, layers, input_shape)
    assert model.count_params() == 156 + 2416 + 48120 + 10164 + 85 * num_classes
    assert [row["output_shape"] for row in analysis][:5] == [(28, 28, 6), (14, 14, 6), (10, 10, 16),
                                                             (5, 5, 16), (1, 1, 120)]
    assert [row["rf"] for row in analysis][:5] == [5, 6, 14, 16, 32]


def test_vgg16_matches_keras_count_params(keras):
    layers, input_shape = concepts.preset_stack("VGG16")
    analysis, model = _check_against_keras(keras, layers, input_shape)
    assert model.count_params() == VGG16_KERAS_PARAMS
    assert concepts.stack_totals(analysis)["macs"] == 15_470_264_320
    pool5 = next(row for row in analysis if row["name"] == "block5_pool")
    assert (pool5["output_shape"], pool5["rf"], pool5["jump"]) == ((7, 7, 512), 212, 32)
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers) == 13
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 5


def test_random_stacks_match_keras_count_params(keras):
    rng = np.random.default_rng(SEED + 5)
    for trial in range(6):
        layers = []
        for index in range(int(rng.integers(1, 4))):
            kind = str(rng.choice(["conv", "conv", "max_pool", "avg_pool"]))
            kernel = int(rng.integers(1, 4))
            stride = int(rng.integers(1, 3))
            layer = {"name": f"layer{index}", "type": kind, "kernel": kernel, "stride": stride,
                     "padding": int(rng.integers(0, 3)), "dilation": 1}
            if kind == "conv":
                layer.update(filters=int(rng.integers(1, 9)), activation="relu",
                             dilation=int(rng.integers(1, 3)) if stride == 1 else 1)
            layers.append(layer)
        layers.append({"name": "head", "type": "dense", "units": int(rng.integers(1, 20)),
                       "activation": "softmax"})
        channels = int(rng.integers(1, 4))
        _check_against_keras(keras, layers, (int(rng.integers(12, 20)), int(rng.integers(12, 20)),
                                             channels))


def test_stack_table_round_trip_and_defaults():
    layers = concepts.vgg16_stack(2)
    assert concepts.parse_stack_table(concepts.stack_table(layers)) == layers
    parsed = concepts.parse_stack_table([
        {"name": "c", "type": "conv", "filters_or_units": 4.0, "kernel": 3, "stride": float("nan"),
         "padding": None, "dilation": None, "activation": None},
        {column: None for column in concepts.STACK_COLUMNS},  # a blank row the editor added
        {"name": None, "type": "max_pool", "kernel": 2},
        {"name": "out", "type": "dense", "filters_or_units": 3, "activation": "softmax"},
    ])
    assert parsed == [
        {"name": "c", "type": "conv", "filters": 4, "kernel": 3, "stride": 1, "padding": 0,
         "dilation": 1, "activation": "relu"},
        {"name": "layer3", "type": "max_pool", "kernel": 2, "stride": 2, "padding": 0, "dilation": 1},
        {"name": "out", "type": "dense", "units": 3, "activation": "softmax"},
    ]


def test_parse_stack_table_reads_editor_frames_with_missing_cells():
    import pandas as pd

    frame = pd.DataFrame(concepts.stack_table(concepts.lenet5_stack()),
                         columns=list(concepts.STACK_COLUMNS))
    for column in ("filters_or_units", "kernel", "stride", "padding", "dilation"):
        frame[column] = frame[column].astype("Int64")  # what the page hands st.data_editor
    added = {"name": "S6", "type": "max_pool", "filters_or_units": pd.NA, "kernel": 1,
             "stride": pd.NA, "padding": pd.NA, "dilation": pd.NA, "activation": None}
    frame = pd.concat([frame.iloc[:5], pd.DataFrame([added]).astype(frame.dtypes.to_dict()),
                       frame.iloc[5:]], ignore_index=True)
    layers = concepts.parse_stack_table(frame.to_dict("records"))
    assert layers[5] == {"name": "S6", "type": "max_pool", "kernel": 1, "stride": 1, "padding": 0,
                         "dilation": 1}
    assert layers[:5] + layers[6:] == concepts.lenet5_stack()


@pytest.mark.parametrize(
    "rows, fragment",
    [([{"name": "a", "type": "lstm"}], "'lstm'"),
     ([{"name": "a", "type": "dense", "filters_or_units": 2}] * 2, "unique"),
     ([{"name": "p", "type": "max_pool", "kernel": 2, "dilation": 2}], "no dilation"),
     ([{"name": "c", "type": "conv", "filters_or_units": 0, "kernel": 3}], "row 1 filters_or_units"),
     ([{"name": "c d", "type": "dense", "filters_or_units": 2}], "'c d'"),
     ([], "empty")],
)
def test_parse_stack_table_rejects_bad_rows(rows, fragment):
    with pytest.raises(ValueError, match=fragment):
        concepts.parse_stack_table(rows)


def test_analyze_stack_names_the_layer_that_does_not_fit():
    layers, _ = concepts.preset_stack("LeNet-5")
    with pytest.raises(ValueError, match="'C5'.*size=4, kernel=5"):
        concepts.analyze_stack(layers, (28, 28, 1))
    with pytest.raises(ValueError, match="follows a dense layer"):
        concepts.analyze_stack([{"name": "d", "type": "dense", "units": 4},
                                {"name": "c", "type": "conv", "filters": 1, "kernel": 1,
                                 "stride": 1}], (8, 8, 1))
    with pytest.raises(ValueError, match="Unknown preset 'AlexNet'"):
        concepts.preset_stack("AlexNet")


# --------------------------------------------------------------------------------- playground


def test_sample_image_is_a_deterministic_drawn_sign():
    image = concepts.sample_image(64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, concepts.sample_image(64))
    red = (image[..., 0] > 150) & (image[..., 1] < 80) & (image[..., 2] < 80)
    assert 0.1 < red.mean() < 0.5  # the red ring
    assert concepts.sample_image(32, 48).shape == (32, 48, 3)


def test_image_from_bytes_decodes_shrinks_and_rejects_garbage():
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (300, 150), (10, 200, 30)).save(buffer, format="PNG")
    image = concepts.image_from_bytes(buffer.getvalue())
    assert image.shape == (48, 96, 3)
    assert tuple(image[0, 0]) == (10, 200, 30)
    with pytest.raises(ValueError, match="image"):
        concepts.image_from_bytes(b"not a picture")


def test_kernels_and_grayscale():
    assert set(concepts.KERNELS) == {"edge", "blur", "sharpen", "emboss"}
    assert concepts.kernel_weights("blur").sum() == pytest.approx(1.0)
    custom = concepts.kernel_weights("custom", np.eye(5))
    np.testing.assert_array_equal(custom, np.eye(5))
    for bad in (np.eye(4), [[1, 2, 3]], [[np.nan] * 3] * 3):
        with pytest.raises(ValueError):
            concepts.kernel_weights("custom", bad)
    with pytest.raises(ValueError, match="'gabor'"):
        concepts.kernel_weights("gabor")
    grey = concepts.to_grayscale(np.full((2, 2, 3), 255, dtype=np.uint8))
    np.testing.assert_allclose(grey, np.ones((2, 2)))
    # the identity kernel gives the image back; 'same' keeps the size
    identity = np.zeros((5, 5))
    identity[2, 2] = 1.0
    image = concepts.to_grayscale(concepts.sample_image(20))
    np.testing.assert_allclose(concepts.convolve2d(image, identity, padding="same"), image)


# -------------------------------------------------------------------------------------- charts


def test_receptive_field_figure_marks_the_window_and_the_padding_part():
    figure = charts.receptive_field_figure(concepts.sample_image(32), (-1, 4), (2, 7), "unit")
    shapes = {shape.name: shape for shape in figure.layout.shapes}
    inside, full = shapes["receptive field"], shapes["padding part"]
    assert (inside.y0, inside.y1, inside.x0, inside.x1) == (-0.5, 4.5, 1.5, 7.5)
    assert (full.y0, full.y1) == (-1.5, 4.5)
    assert figure.data[0].type == "image"


def test_depth_figure_and_heatmaps():
    series = {name: concepts.analyze_stack(*concepts.preset_stack(name))
              for name in concepts.PRESET_NAMES}
    figure = charts.receptive_field_depth_figure(series)
    assert [trace.name for trace in figure.data] == ["LeNet-5", "VGG16"]
    assert list(figure.data[0].y) == [5, 6, 14, 16, 32]
    assert figure.data[1].y[-1] == 212
    heatmap = charts.heatmap_figure(np.arange(6).reshape(2, 3), "map")
    assert heatmap.layout.yaxis.autorange == "reversed"
    np.testing.assert_array_equal(heatmap.data[0].z, np.arange(6).reshape(2, 3))
    padded = charts.padded_input_figure(np.zeros((6, 6)), (1, 1), (4, 4))
    outline = padded.layout.shapes[0]
    assert (outline.x0, outline.x1) == (0.5, 4.5)
    pooled = charts.pooling_figure(np.ones((2, 2)), np.zeros((2, 2)))
    assert [trace.name for trace in pooled.data] == ["max", "average"]
