"""Layer stacks: LeNet-5 and VGG16 as layer tables, their analysis, and the same stack in Keras.

``analyze_stack`` computes output shapes, parameters, multiply-accumulates and receptive fields
in plain Python; ``build_keras_model`` builds the stack with real Keras layers, so the tests can
check every number against ``count_params()`` and Keras' output shapes.
"""

from __future__ import annotations

import re

import numpy as np

from core.concepts.checks import _non_negative, _positive
from core.concepts.connections import LENET5_C3_CONNECTIONS, partial_conv_params
from core.concepts.geometry import conv_output_size, dilated_kernel_size, receptive_field

LAYER_TYPES = ("conv", "max_pool", "avg_pool", "dense")
POOL_TYPES = ("max_pool", "avg_pool")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "softmax", "linear")

# Columns of the editable layer-stack table (``stack_table``/``parse_stack_table``).
STACK_COLUMNS = ("name", "type", "filters_or_units", "kernel", "stride", "padding", "dilation",
                 "activation")

LENET5_INPUT_SHAPE = (32, 32, 1)
VGG16_INPUT_SHAPE = (224, 224, 3)
LENET5_NUM_CLASSES = 10
VGG16_NUM_CLASSES = 1000
PRESET_NAMES = ("LeNet-5", "VGG16")


def _layer(name, layer_type, filters_or_units=None, kernel=None, stride=None, padding=0,
           dilation=1, activation=None) -> dict:
    layer = {"name": name, "type": layer_type}
    if layer_type == "conv":
        layer.update(filters=filters_or_units, kernel=kernel, stride=stride or 1, padding=padding,
                     dilation=dilation, activation=activation or "relu")
    elif layer_type in POOL_TYPES:
        layer.update(kernel=kernel, stride=stride or kernel, padding=padding, dilation=1)
    else:
        layer.update(units=filters_or_units, activation=activation or "relu")
    return layer


def lenet5_stack(num_classes: int = LENET5_NUM_CLASSES, partial_c3: bool = False) -> list[dict]:
    """LeNet-5 (LeCun et al. 1998) as a layer stack for a 32×32×1 input.

    C1 6@5×5, S2 2×2 average pooling, C3 16@5×5, S4 2×2 average pooling, C5 120@5×5, F6 84,
    output ``num_classes`` (tanh activations, softmax output). C3 is fully connected to S2 by
    default, as in the Keras re-implementations; ``partial_c3`` gives it the paper's table I.

    Args:
        num_classes: units of the output layer (10 digits in the paper, 43 for GTSRB).
        partial_c3: connect C3 to S2 through ``LENET5_C3_CONNECTIONS`` (1,516 parameters
            instead of 2,416).

    Returns:
        A list of layer dicts.
    """
    num_classes = _positive(num_classes, "num_classes")
    layers = [
        _layer("C1", "conv", 6, 5, 1, activation="tanh"),
        _layer("S2", "avg_pool", kernel=2, stride=2),
        _layer("C3", "conv", 16, 5, 1, activation="tanh"),
        _layer("S4", "avg_pool", kernel=2, stride=2),
        _layer("C5", "conv", 120, 5, 1, activation="tanh"),
        _layer("F6", "dense", 84, activation="tanh"),
        _layer("output", "dense", num_classes, activation="softmax"),
    ]
    return use_partial_c3(layers) if partial_c3 else layers


def use_partial_c3(layers: list[dict], layer_name: str = "C3") -> list[dict]:
    """A copy of a stack whose ``layer_name`` conv reads S2 through LeNet-5's table I.

    Args:
        layers: layer dicts (e.g. ``lenet5_stack()`` or an edited table).
        layer_name: the conv layer to change.

    Returns:
        New layer dicts; the chosen layer gets ``connections`` (16 output maps over 6 inputs).

    Raises:
        ValueError: when there is no such conv layer or it does not have 16 filters.
    """
    changed, found = [], False
    for layer in layers:
        layer = dict(layer)
        if layer.get("name") == layer_name:
            if layer.get("type") != "conv" or layer.get("filters") != len(LENET5_C3_CONNECTIONS):
                raise ValueError(f"the partial table needs {layer_name} to be a conv layer with "
                                 f"{len(LENET5_C3_CONNECTIONS)} filters, received {layer!r}")
            layer["connections"] = [list(inputs) for inputs in LENET5_C3_CONNECTIONS]
            found = True
        changed.append(layer)
    if not found:
        raise ValueError(f"no layer named {layer_name!r} for the partial connection table; "
                         f"layers are {[layer.get('name') for layer in layers]}")
    return changed


def vgg16_stack(num_classes: int = VGG16_NUM_CLASSES) -> list[dict]:
    """VGG16 (configuration D) as a layer stack for a 224×224×3 input.

    13 convolutions 3×3 (stride 1, padding 1), 5 max-pooling 2×2 (stride 2), then fully connected
    4096, 4096 and ``num_classes`` (1000 for ImageNet), named as in ``keras.applications.VGG16``.

    Args:
        num_classes: units of the output layer.

    Returns:
        A list of layer dicts.
    """
    num_classes = _positive(num_classes, "num_classes")
    layers = []
    for block, (filters, repeats) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
                                               start=1):
        for index in range(1, repeats + 1):
            layers.append(_layer(f"block{block}_conv{index}", "conv", filters, 3, 1, padding=1))
        layers.append(_layer(f"block{block}_pool", "max_pool", kernel=2, stride=2))
    layers.append(_layer("fc1", "dense", 4096))
    layers.append(_layer("fc2", "dense", 4096))
    layers.append(_layer("predictions", "dense", num_classes, activation="softmax"))
    return layers


def preset_stack(name: str, num_classes: int | None = None) -> tuple[list[dict], tuple]:
    """A named preset and its natural input shape.

    Args:
        name: one of ``PRESET_NAMES``.
        num_classes: output units (default: 10 for LeNet-5, 1000 for VGG16).

    Returns:
        ``(layers, input_shape)``.
    """
    if name == "LeNet-5":
        return lenet5_stack(num_classes or LENET5_NUM_CLASSES), LENET5_INPUT_SHAPE
    if name == "VGG16":
        return vgg16_stack(num_classes or VGG16_NUM_CLASSES), VGG16_INPUT_SHAPE
    raise ValueError(f"Unknown preset {name!r}; expected one of {PRESET_NAMES}")


def stack_table(layers: list[dict]) -> list[dict]:
    """Layer dicts as rows of the editable table (columns ``STACK_COLUMNS``)."""
    rows = []
    for layer in layers:
        is_pool = layer["type"] in POOL_TYPES
        rows.append({
            "name": layer["name"],
            "type": layer["type"],
            "filters_or_units": None if is_pool else layer.get("filters", layer.get("units")),
            "kernel": layer.get("kernel"),
            "stride": layer.get("stride"),
            "padding": layer.get("padding"),
            "dilation": layer.get("dilation"),
            "activation": layer.get("activation"),
        })
    return rows


def _missing(value) -> bool:
    """True for an empty table cell: None, NaN, pandas.NA/NaT or a blank string."""
    if isinstance(value, str):
        return value.strip() == ""
    import pandas  # deferred: only table parsing needs it

    missing = pandas.isna(value)
    return bool(missing) if np.ndim(missing) == 0 else False


def parse_stack_table(rows) -> list[dict]:
    """Turns table rows (e.g. ``st.data_editor`` output records) into validated layer dicts.

    Empty cells take defaults: stride 1 (conv) or the pool size (pooling), padding 0,
    dilation 1, activation relu, name ``layer<N>``.

    Args:
        rows: iterable of dicts with the keys of ``STACK_COLUMNS``.

    Returns:
        A list of layer dicts accepted by ``analyze_stack`` and ``build_keras_model``.

    Raises:
        ValueError: naming the row and the bad value.
    """
    layers = []
    names = set()
    for number, row in enumerate(rows, start=1):
        if all(_missing(row.get(column)) for column in STACK_COLUMNS):
            continue  # a blank row the editor added
        where = f"row {number}"
        layer_type = row.get("type")
        if layer_type not in LAYER_TYPES:
            raise ValueError(f"{where}: type must be one of {LAYER_TYPES}, received {layer_type!r}")
        name = row.get("name")
        name = f"layer{number}" if _missing(name) else str(name).strip()
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", name):
            raise ValueError(f"{where}: name must start with a letter and use letters, digits, "
                             f"'_' or '-', received {name!r}")
        if name in names:
            raise ValueError(f"{where}: layer names must be unique, received {name!r} twice")
        names.add(name)

        def number_of(column, default, check, row=row, where=where):
            value = row.get(column)
            return check(default if _missing(value) else value, f"{where} {column}")

        activation = row.get("activation")
        activation = "relu" if _missing(activation) else str(activation)
        if activation not in ACTIVATIONS:
            raise ValueError(f"{where}: activation must be one of {ACTIVATIONS}, "
                             f"received {activation!r}")
        if layer_type == "dense":
            layers.append({"name": name, "type": "dense",
                           "units": number_of("filters_or_units", None, _positive),
                           "activation": activation})
            continue
        kernel = number_of("kernel", None, _positive)
        if layer_type == "conv":
            layers.append({"name": name, "type": "conv",
                           "filters": number_of("filters_or_units", None, _positive),
                           "kernel": kernel,
                           "stride": number_of("stride", 1, _positive),
                           "padding": number_of("padding", 0, _non_negative),
                           "dilation": number_of("dilation", 1, _positive),
                           "activation": activation})
        else:
            dilation = number_of("dilation", 1, _positive)
            if dilation != 1:
                raise ValueError(f"{where}: pooling layers have no dilation (expected 1), "
                                 f"received {dilation}")
            layers.append({"name": name, "type": layer_type, "kernel": kernel,
                           "stride": number_of("stride", kernel, _positive),
                           "padding": number_of("padding", 0, _non_negative),
                           "dilation": 1})
    if not layers:
        raise ValueError("The layer stack is empty: expected at least one row")
    return layers


def _validate_input_shape(input_shape) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), received {input_shape!r}")
    height, width, channels = (_positive(value, "input_shape") for value in input_shape)
    return height, width, channels


def analyze_stack(layers: list[dict], input_shape) -> list[dict]:
    """Per-layer output shape, parameters, multiply-accumulates, receptive field and jump.

    Parameters: conv ``(F·F·C_in + 1)·filters`` (with a ``connections`` table, as LeNet-5's
    partial C3: ``Σ (F·F·|inputs| + 1)``), dense ``(inputs + 1)·units``, pooling 0.
    Multiply-accumulates: conv ``H_out·W_out·filters·F·F·C_in`` (partial: ``H_out·W_out·F·F`` per
    link), dense ``inputs·units``,
    pooling 0 (no weights; its comparisons/additions are not counted). A dense layer after a
    spatial layer flattens its input first. Receptive field and jump follow
    ``receptive_field`` for conv/pool layers; dense units see the whole input (``rf`` None).

    Args:
        layers: layer dicts (``lenet5_stack``, ``vgg16_stack`` or ``parse_stack_table``).
        input_shape: ``(height, width, channels)``.

    Returns:
        One dict per layer: ``name``, ``type``, ``output_shape`` (tuple), ``params``, ``macs``,
        ``rf``, ``jump``, ``start``.

    Raises:
        ValueError: naming the layer when a window does not fit or a conv follows a dense layer.
    """
    height, width, channels = _validate_input_shape(input_shape)
    shape = (height, width, channels)
    spatial_fields = []
    rows = []
    for layer in layers:
        name, layer_type = layer["name"], layer["type"]
        if layer_type == "dense":
            inputs = int(np.prod(shape))
            units = layer["units"]
            params = (inputs + 1) * units
            macs = inputs * units
            shape = (units,)
            rf = jump = start = None
        else:
            if len(shape) != 3:
                raise ValueError(f"Layer {name!r} ({layer_type}) needs a spatial input but follows a "
                                 f"dense layer (received input shape {shape})")
            kernel, stride = layer["kernel"], layer["stride"]
            padding, dilation = layer.get("padding", 0), layer.get("dilation", 1)
            try:
                out_height = conv_output_size(shape[0], kernel, stride, padding, dilation)
                out_width = conv_output_size(shape[1], kernel, stride, padding, dilation)
            except ValueError as error:
                raise ValueError(f"Layer {name!r}: {error}") from None
            if layer_type == "conv" and layer.get("connections") is not None:
                try:
                    params = partial_conv_params(kernel, layer["connections"], shape[2])
                except ValueError as error:
                    raise ValueError(f"Layer {name!r}: {error}") from None
                links = sum(len(inputs) for inputs in layer["connections"])
                macs = out_height * out_width * kernel * kernel * links
                shape = (out_height, out_width, len(layer["connections"]))
            elif layer_type == "conv":
                filters = layer["filters"]
                params = (kernel * kernel * shape[2] + 1) * filters
                macs = out_height * out_width * filters * kernel * kernel * shape[2]
                shape = (out_height, out_width, filters)
            else:
                params = macs = 0
                shape = (out_height, out_width, shape[2])
            spatial_fields.append(layer)
            field = receptive_field(spatial_fields)[-1]
            rf, jump, start = field["rf"], field["jump"], field["start"]
        rows.append({"name": name, "type": layer_type, "output_shape": shape, "params": params,
                     "macs": macs, "rf": rf, "jump": jump, "start": start})
    return rows


def stack_totals(analysis: list[dict]) -> dict:
    """Totals of an ``analyze_stack`` result: ``params``, ``macs``, ``output_shape``."""
    return {
        "params": sum(row["params"] for row in analysis),
        "macs": sum(row["macs"] for row in analysis),
        "output_shape": analysis[-1]["output_shape"] if analysis else None,
    }


def _keras_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def build_keras_model(layers: list[dict], input_shape, name: str = "stack"):
    """Builds the same stack with real Keras layers (randomly initialised, no weights loaded).

    Integer padding becomes ``padding="valid"`` (0), ``padding="same"`` (when stride 1 and
    ``P = (F' - 1) / 2``, which is identical) or an explicit ``ZeroPadding2D`` before the layer.
    A ``Flatten`` is inserted before the first dense layer that follows a spatial layer.

    Args:
        layers: layer dicts as accepted by ``analyze_stack``.
        input_shape: ``(height, width, channels)``.
        name: the model's name.

    Returns:
        A built ``keras.Sequential``; its ``count_params()`` equals
        ``stack_totals(analyze_stack(layers, input_shape))["params"]``.
    """
    import keras  # deferred: importing Keras is slow and only the tests and CLIs need it

    input_shape = _validate_input_shape(input_shape)
    analyze_stack(layers, input_shape)  # validates shapes with readable messages
    model_layers = [keras.Input(shape=input_shape)]
    spatial = True
    for layer in layers:
        layer_name = _keras_name(layer["name"])
        if layer["type"] == "dense":
            if spatial:
                model_layers.append(keras.layers.Flatten(name=f"{layer_name}_flatten"))
                spatial = False
            model_layers.append(keras.layers.Dense(layer["units"], activation=layer["activation"],
                                                   name=layer_name))
            continue
        padding = layer.get("padding", 0)
        dilation = layer.get("dilation", 1)
        effective = dilated_kernel_size(layer["kernel"], dilation)
        if padding == 0:
            keras_padding = "valid"
        elif layer["stride"] == 1 and 2 * padding == effective - 1:
            keras_padding = "same"
        else:
            model_layers.append(keras.layers.ZeroPadding2D(padding, name=f"{layer_name}_padding"))
            keras_padding = "valid"
        if layer["type"] == "conv" and layer.get("connections") is not None:
            from core.concepts.partial_conv import PartialConv2D  # imports Keras

            if dilation != 1:
                raise ValueError(f"Layer {layer['name']!r}: a partial connection table supports "
                                 f"dilation 1 only, received {dilation}")
            model_layers.append(PartialConv2D(layer["connections"], layer["kernel"],
                                              strides=layer["stride"], padding=keras_padding,
                                              activation=layer["activation"], name=layer_name))
        elif layer["type"] == "conv":
            model_layers.append(keras.layers.Conv2D(
                layer["filters"], layer["kernel"], strides=layer["stride"], padding=keras_padding,
                dilation_rate=dilation, activation=layer["activation"], name=layer_name))
        else:
            pool_class = (keras.layers.MaxPooling2D if layer["type"] == "max_pool"
                          else keras.layers.AveragePooling2D)
            model_layers.append(pool_class(layer["kernel"], strides=layer["stride"],
                                           padding=keras_padding, name=layer_name))
    return keras.Sequential(model_layers, name=_keras_name(name))
