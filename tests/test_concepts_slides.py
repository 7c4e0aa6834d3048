"""The study's last two concept slides, checked against real Keras layers.

* LeNet-5's C3 partial connection table (LeCun et al. 1998, table I): 1,516 trainable parameters;
* replacing pooling by a strided convolution (Springenberg et al. 2015): output size,
  parameters and receptive field of each variant.
"""

from __future__ import annotations

import numpy as np
import pytest

from core import concepts
from core.concepts import connections, strided


def test_table_one_has_the_papers_shape_and_marks():
    matrix = concepts.connection_matrix()
    assert matrix.shape == (6, 16)
    assert matrix.sum(axis=0).tolist() == [3] * 6 + [4] * 9 + [6]
    assert matrix.sum(axis=1).tolist() == [10] * 6  # every S2 map feeds 10 C3 maps
    assert np.flatnonzero(matrix[:, 12]).tolist() == [0, 1, 3, 4]  # the non-contiguous ones
    assert np.flatnonzero(matrix[:, 14]).tolist() == [0, 2, 3, 5]
    assert matrix[0].astype(int).tolist() == [1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1]


def test_full_and_partial_parameter_counts_side_by_side():
    assert concepts.connection_parameter_counts() == {
        "full_connections": 96, "partial_connections": 60, "full_params": 2416, "partial_params": 1516}
    with pytest.raises(ValueError, match=r"output map 1 must read distinct input maps in 0\.\.5, received \(2, 6\)"):
        concepts.connection_matrix([(0,), (2, 6)], 6)


def test_partial_c3_has_exactly_1516_trainable_parameters_in_keras():
    import keras

    from core.concepts.partial_conv import PartialConv2D

    inputs = keras.Input((14, 14, 6))
    partial = PartialConv2D(concepts.LENET5_C3_CONNECTIONS, 5, name="c3_partial")
    full = keras.layers.Conv2D(16, 5, name="c3_full")
    model = keras.Model(inputs, [partial(inputs), full(inputs)])
    assert partial.count_params() == 1516
    assert sum(int(np.prod(weight.shape)) for weight in partial.trainable_weights) == 1516
    assert full.count_params() == 2416
    assert [tuple(output.shape) for output in model.outputs] == [(None, 10, 10, 16)] * 2


def test_partial_conv_equals_a_full_conv_with_the_missing_kernels_zeroed():
    import keras

    from core.concepts.partial_conv import PartialConv2D

    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 14, 14, 6)).astype("float32")
    partial = PartialConv2D(concepts.LENET5_C3_CONNECTIONS, 5)
    partial_out = keras.ops.convert_to_numpy(partial(images))
    kernel = np.zeros((5, 5, 6, 16), dtype="float32")
    for output, (inputs, weight) in enumerate(zip(partial.connections, partial.map_kernels)):
        kernel[:, :, list(inputs), output] = keras.ops.convert_to_numpy(weight)[..., 0]
    bias = rng.normal(size=16).astype("float32")
    partial.bias.assign(bias)
    full = keras.layers.Conv2D(16, 5)
    full.build((None, 14, 14, 6))
    full.set_weights([kernel, bias])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(partial(images)),
                               keras.ops.convert_to_numpy(full(images)), atol=1e-5)
    assert not np.allclose(partial_out, keras.ops.convert_to_numpy(full(images)), atol=1e-3)  # bias moved it
    revived = PartialConv2D.from_config(partial.get_config())
    assert revived.connections == [tuple(inputs) for inputs in concepts.LENET5_C3_CONNECTIONS]


def test_lenet_stack_with_the_partial_table_matches_its_keras_build():
    layers = concepts.lenet5_stack(partial_c3=True)
    analysis = concepts.analyze_stack(layers, concepts.LENET5_INPUT_SHAPE)
    by_name = {row["name"]: row for row in analysis}
    assert by_name["C3"]["params"] == 1516
    assert by_name["C3"]["macs"] == 10 * 10 * 25 * 60
    assert concepts.stack_totals(analysis)["params"] == 61_706 - 900
    model = concepts.build_keras_model(layers, concepts.LENET5_INPUT_SHAPE)
    assert model.count_params() == 60_806
    assert model.get_layer("C3").count_params() == 1516
    assert tuple(model.get_layer("C3").output.shape) == (None, *by_name["C3"]["output_shape"])


def test_partial_table_needs_a_sixteen_map_c3_on_six_inputs():
    with pytest.raises(ValueError, match="no layer named 'C3'"):
        concepts.use_partial_c3(concepts.vgg16_stack())
    layers = concepts.lenet5_stack()
    layers[2]["filters"] = 12
    with pytest.raises(ValueError, match="C3 to be a conv layer with 16 filters"):
        concepts.use_partial_c3(layers)
    three_maps = concepts.lenet5_stack(partial_c3=True)
    three_maps[0]["filters"] = 3  # C1 with 3 maps: table I reads S2 maps up to 5
    with pytest.raises(ValueError, match=r"Layer 'C3': output map 1 must read distinct input maps "
                                         r"in 0\.\.2, received \(1, 2, 3\)"):
        concepts.analyze_stack(three_maps, concepts.LENET5_INPUT_SHAPE)


def test_pooling_variants_sizes_parameters_and_fields():
    rows = {row["variant"]: row for row in concepts.compare_pooling_variants()}
    pooling, all_conv, strided_previous = (rows[name] for name in concepts.STRIDED_VARIANTS)
    conv_params = (3 * 3 * 3 + 1) * 96 + (3 * 3 * 96 + 1) * 96
    assert [row["output_shape"] for row in rows.values()] == [(16, 16, 96)] * 3
    assert (pooling["params"], pooling["rf"], pooling["jump"]) == (conv_params, 7, 2)
    assert (all_conv["replacement_params"], all_conv["rf"]) == (3 * 3 * 96 * 96 + 96, 7)
    assert (strided_previous["params"], strided_previous["rf"]) == (conv_params, 5)
    assert strided_previous["macs"] < pooling["macs"] < all_conv["macs"]
    assert "arXiv:1412.6806" in concepts.SPRINGENBERG_2015


def _measured_receptive_field(model, input_shape, unit: int) -> int:
    """Columns of the middle input row whose pixel changes output unit (unit, unit, 0)."""
    import keras

    height, width, channels = input_shape
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([np.ones_like(weights[0]), np.zeros_like(weights[1])])
    probes = np.zeros((width, height, width, channels), dtype="float32")
    probes[np.arange(width), height // 2, np.arange(width), 0] = 1.0
    outputs = keras.ops.convert_to_numpy(model(probes))[:, unit, unit, 0]
    baseline = keras.ops.convert_to_numpy(model(np.zeros((1, *input_shape), "float32")))[0, unit, unit, 0]
    return int((np.abs(outputs - baseline) > 1e-6).sum())


@pytest.mark.parametrize("variant", concepts.STRIDED_VARIANTS)
def test_each_variant_matches_real_keras_layers(variant):
    small = {"filters": 4}
    row = next(row for row in concepts.compare_pooling_variants((32, 32, 3), **small)
               if row["variant"] == variant)
    model = concepts.build_keras_model(strided.pooling_variants(**small)[variant], (32, 32, 3))
    assert tuple(model.layers[-1].output.shape) == (None, *row["output_shape"])
    assert model.count_params() == row["params"]
    assert _measured_receptive_field(model, (32, 32, 3), unit=8) == row["rf"]


def test_strided_options_are_checked():
    with pytest.raises(ValueError, match="pool_stride must be a positive integer, received 0"):
        strided.pooling_variants(pool_stride=0)
    assert connections.partial_conv_params(3, [(0, 1)], 2) == 19
