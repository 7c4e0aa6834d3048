"""CNN concepts: output sizes, receptive fields, layer stacks and a NumPy convolution playground.

Everything the Concepts page shows is computed here, in plain Python/NumPy, so the same numbers
can be checked against real Keras layers (``build_keras_model`` builds one from a layer stack).

Output size. Along one axis, a convolution with input size ``W``, kernel ``F``, stride ``S``,
zero-padding ``P`` on both sides and dilation ``d`` has the dilated kernel size
``F' = d(F - 1) + 1`` and the output size ``floor((W - F' + 2P) / S) + 1``: frameworks floor the
division, so when ``(W - F' + 2P)`` is not a multiple of ``S`` the last input columns are never
covered by any window.

Receptive-field convention. Pixel ``i`` of the input covers the interval ``[i, i + 1)``, so its
centre is at ``i + 0.5``: the input layer starts with ``jump = 1``, ``rf = 1``, ``start = 0.5``.
For each layer with effective kernel ``k' = d(k - 1) + 1``::

    jump_out  = jump_in * stride
    rf_out    = rf_in + (k' - 1) * jump_in
    start_out = start_in + ((k' - 1) / 2 - padding) * jump_in

``start`` is the input coordinate of the centre of the first output unit's receptive field; unit
``n`` is centred at ``start + n * jump`` and sees the input pixels
``start + n * jump - rf / 2 .. start + n * jump + rf / 2 - 1`` (indices may fall in the padding,
i.e. be negative or past the edge).
"""

from __future__ import annotations

import math
import operator
import re

import numpy as np

# Coordinate of the first input pixel's centre (pixel i spans [i, i + 1)).
INPUT_START = 0.5

KERAS_PADDINGS = ("valid", "same")
POOL_MODES = ("max", "average")
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

SAMPLE_IMAGE_SIZE = 64
MAX_PLAYGROUND_SIDE = 96

# Classic 3x3 kernels (applied as cross-correlation, as CNN frameworks do).
KERNELS = {
    "edge": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float64),
    "blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 16.0,
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64),
    "emboss": np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64),
}
CUSTOM_KERNEL_SIZES = (3, 5)


class AttrDict(dict):
    """A dict whose keys can also be read as attributes (``item["rf"] == item.rf``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error


# ---------------------------------------------------------------------------------------------
# Validation helpers


def _as_int(value, name: str) -> int:
    """Returns ``value`` as an int, raising ValueError for non-integers (bools included)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, received {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, received {value!r}") from None


def _positive(value, name: str) -> int:
    number = _as_int(value, name)
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, received {value!r}")
    return number


def _non_negative(value, name: str) -> int:
    number = _as_int(value, name)
    if number < 0:
        raise ValueError(f"{name} must be zero or a positive integer, received {value!r}")
    return number


def dilated_kernel_size(kernel: int, dilation: int = 1) -> int:
    """The span of a dilated kernel, ``F' = d(F - 1) + 1``.

    Args:
        kernel: kernel size F (positive).
        dilation: dilation rate d (positive).

    Returns:
        The number of input pixels one window spans.
    """
    kernel = _positive(kernel, "kernel")
    dilation = _positive(dilation, "dilation")
    return dilation * (kernel - 1) + 1


# ---------------------------------------------------------------------------------------------
# Output sizes


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1) -> int:
    """Output size along one axis, with the frameworks' floor semantics.

    ``floor((size - F' + 2 * padding) / stride) + 1`` with ``F' = dilation * (kernel - 1) + 1``.

    Args:
        size: input size W (positive).
        kernel: kernel size F (positive).
        stride: stride S (positive).
        padding: zero-padding P added on each side (zero or positive).
        dilation: dilation rate d (positive).

    Returns:
        The output size (at least 1).

    Raises:
        ValueError: for a non-positive size/kernel/stride/dilation, a negative padding, or a
            dilated kernel larger than the padded input.
    """
    size = _positive(size, "size")
    kernel = _positive(kernel, "kernel")
    stride = _positive(stride, "stride")
    padding = _non_negative(padding, "padding")
    dilation = _positive(dilation, "dilation")
    effective = dilated_kernel_size(kernel, dilation)
    if effective > size + 2 * padding:
        raise ValueError(
            f"The dilated kernel does not fit the padded input: received size={size}, "
            f"kernel={kernel}, stride={stride}, padding={padding}, dilation={dilation}; the "
            f"dilated kernel spans {effective} pixels but the padded input has only "
            f"{size + 2 * padding} (expected dilation*(kernel-1)+1 <= size + 2*padding)"
        )
    return (size - effective + 2 * padding) // stride + 1


def misprinted_output_size(size, kernel, stride=1, padding=0) -> float:
    """What the slide's misprint ``(W - F + 2P) / (S + 1)`` would give (a teaching note only).

    Args:
        size: input size W.
        kernel: kernel size F.
        stride: stride S.
        padding: zero-padding P.

    Returns:
        The (wrong) value, unrounded.
    """
    size = _positive(size, "size")
    kernel = _positive(kernel, "kernel")
    stride = _positive(stride, "stride")
    padding = _non_negative(padding, "padding")
    return (size - kernel + 2 * padding) / (stride + 1)


def output_size_report(size, kernel, stride=1, padding=0, dilation=1) -> dict:
    """Everything the calculator shows for one axis.

    Args:
        size, kernel, stride, padding, dilation: as in ``conv_output_size``.

    Returns:
        A dict with ``size``, ``kernel``, ``stride``, ``padding``, ``dilation``,
        ``effective_kernel`` (F'), ``numerator`` (W - F' + 2P), ``exact`` (numerator / S + 1,
        unfloored), ``output_size``, ``divisible``, ``remainder`` (numerator mod S),
        ``uncovered`` (padded columns at the end that no window covers),
        ``uncovered_input`` (how many of those are real input columns, not padding),
        ``misprint`` (the slide's (W - F + 2P) / (S + 1)), ``formula`` (plain text with the
        numbers substituted) and ``formula_latex`` (the same for ``st.latex``).
    """
    output = conv_output_size(size, kernel, stride, padding, dilation)
    effective = dilated_kernel_size(kernel, dilation)
    numerator = size - effective + 2 * padding
    remainder = numerator % stride
    kernel_text = f"{effective}" if dilation == 1 else f"({dilation}·({kernel}−1)+1)"
    kernel_latex = f"{effective}" if dilation == 1 else rf"({dilation}\cdot({kernel}-1)+1)"
    formula = (f"({size} − {kernel_text} + 2·{padding}) / {stride} + 1 = {numerator}/{stride} + 1"
               f" = {numerator / stride + 1:g}")
    formula_latex = (rf"\frac{{{size} - {kernel_latex} + 2 \cdot {padding}}}{{{stride}}} + 1"
                     rf" = \frac{{{numerator}}}{{{stride}}} + 1 = {numerator / stride + 1:g}")
    if remainder:
        formula += f" → floored: ⌊{numerator}/{stride}⌋ + 1 = {output}"
        formula_latex += (rf" \;\rightarrow\; \left\lfloor\frac{{{numerator}}}{{{stride}}}"
                          rf"\right\rfloor + 1 = {output}")
    return {
        "size": size,
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "effective_kernel": effective,
        "numerator": numerator,
        "exact": numerator / stride + 1,
        "output_size": output,
        "divisible": remainder == 0,
        "remainder": remainder,
        "uncovered": remainder,
        "uncovered_input": max(0, remainder - padding),
        "misprint": misprinted_output_size(size, kernel, stride, padding),
        "formula": formula,
        "formula_latex": formula_latex,
    }


def keras_padding_amounts(size, kernel, stride=1, padding="valid", dilation=1) -> tuple[int, int]:
    """Zero-padding (before, after) one axis gets, as Keras/TensorFlow compute it.

    ``"valid"`` pads nothing; ``"same"`` pads ``max((ceil(W/S) - 1)·S + F' - W, 0)`` in total,
    the smaller half before and the larger half after. An int pads that many on both sides.

    Args:
        size: input size W.
        kernel: kernel size F.
        stride: stride S.
        padding: ``"valid"``, ``"same"`` or a non-negative int.
        dilation: dilation rate d.

    Returns:
        ``(before, after)``.
    """
    size = _positive(size, "size")
    stride = _positive(stride, "stride")
    effective = dilated_kernel_size(kernel, dilation)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0
        if mode == "same":
            total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
            return total // 2, total - total // 2
        raise ValueError(f"padding must be 'valid', 'same' or an integer, received {padding!r}")
    amount = _non_negative(padding, "padding")
    return amount, amount


def keras_output_size(size, kernel, stride=1, padding="valid", dilation=1) -> int:
    """Output size as Keras computes it for ``padding="valid"`` or ``"same"``.

    ``"valid"``: ``floor((W - F') / S) + 1``; ``"same"``: ``ceil(W / S)``.

    Args:
        size: input size W.
        kernel: kernel (or pool) size F.
        stride: stride S.
        padding: ``"valid"`` or ``"same"``.
        dilation: dilation rate d.

    Returns:
        The output size.

    Raises:
        ValueError: for an unknown padding, or a kernel larger than the input with ``"valid"``.
    """
    size = _positive(size, "size")
    stride = _positive(stride, "stride")
    effective = dilated_kernel_size(kernel, dilation)
    mode = padding.lower() if isinstance(padding, str) else padding
    if mode == "same":
        return math.ceil(size / stride)
    if mode == "valid":
        if effective > size:
            raise ValueError(
                f"With padding='valid' the dilated kernel ({effective}) must fit the input: "
                f"received size={size}, kernel={kernel}, dilation={dilation}"
            )
        return (size - effective) // stride + 1
    raise ValueError(f"padding must be 'valid' or 'same', received {padding!r}")


def pooling_output_size(size, pool_size=2, stride=None, padding="valid") -> int:
    """Output size of max/average pooling as Keras computes it.

    Args:
        size: input size W.
        pool_size: window size F.
        stride: stride S (default: ``pool_size``, as in Keras).
        padding: ``"valid"`` or ``"same"``.

    Returns:
        The pooled size.
    """
    pool_size = _positive(pool_size, "pool_size")
    stride = pool_size if stride is None else stride
    return keras_output_size(size, pool_size, stride, padding)


# ---------------------------------------------------------------------------------------------
# Receptive fields


def receptive_field(layers) -> list:
    """Receptive field, jump and start of every layer of a conv/pool stack (one axis).

    Uses the recurrence in the module docstring, starting from ``jump = 1``, ``rf = 1``,
    ``start = 0.5`` (pixel centres at ``i + 0.5``).

    Args:
        layers: list of dicts with keys ``kernel`` and optionally ``stride`` (default 1),
            ``padding`` (default 0) and ``dilation`` (default 1); other keys are ignored.

    Returns:
        One ``AttrDict`` per layer with ``rf`` (input pixels one unit sees), ``jump`` (input
        pixels between adjacent units) and ``start`` (input coordinate of the centre of the
        first unit's receptive field); items support ``item["rf"]`` and ``item.rf``.
    """
    jump, rf, start = 1, 1, INPUT_START
    results = []
    for index, layer in enumerate(layers):
        if "kernel" not in layer:
            raise ValueError(f"Layer {index} needs a 'kernel' key, received {dict(layer)!r}")
        kernel = _positive(layer["kernel"], f"layers[{index}]['kernel']")
        stride = _positive(layer.get("stride", 1), f"layers[{index}]['stride']")
        padding = _non_negative(layer.get("padding", 0), f"layers[{index}]['padding']")
        dilation = _positive(layer.get("dilation", 1), f"layers[{index}]['dilation']")
        effective = dilation * (kernel - 1) + 1
        rf = rf + (effective - 1) * jump
        start = start + ((effective - 1) / 2 - padding) * jump
        jump = jump * stride
        results.append(AttrDict(rf=rf, jump=jump, start=start))
    return results


def receptive_window(field, unit: int) -> tuple[int, int]:
    """Input pixel indices ``(first, last)`` (inclusive, unclipped) that one unit sees.

    Args:
        field: one item of ``receptive_field`` (``rf``, ``jump``, ``start``).
        unit: output unit index along the axis (0-based).

    Returns:
        ``(first, last)``; negative or too large indices lie in the zero-padding.
    """
    unit = _non_negative(unit, "unit")
    centre = field["start"] + unit * field["jump"]
    first = centre - field["rf"] / 2
    return int(round(first)), int(round(first)) + field["rf"] - 1


# ---------------------------------------------------------------------------------------------
# Layer stacks


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


def lenet5_stack(num_classes: int = LENET5_NUM_CLASSES) -> list[dict]:
    """LeNet-5 (LeCun et al. 1998) as a layer stack for a 32×32×1 input.

    C1 6@5×5, S2 2×2 average pooling, C3 16@5×5, S4 2×2 average pooling, C5 120@5×5, F6 84,
    output ``num_classes`` (tanh activations, softmax output). C3 is fully connected to S2 here
    (the paper's sparse connection table is not reproduced), as in the Keras re-implementations.

    Args:
        num_classes: units of the output layer (10 digits in the paper, 43 for GTSRB).

    Returns:
        A list of layer dicts.
    """
    num_classes = _positive(num_classes, "num_classes")
    return [
        _layer("C1", "conv", 6, 5, 1, activation="tanh"),
        _layer("S2", "avg_pool", kernel=2, stride=2),
        _layer("C3", "conv", 16, 5, 1, activation="tanh"),
        _layer("S4", "avg_pool", kernel=2, stride=2),
        _layer("C5", "conv", 120, 5, 1, activation="tanh"),
        _layer("F6", "dense", 84, activation="tanh"),
        _layer("output", "dense", num_classes, activation="softmax"),
    ]


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

    Parameters: conv ``(F·F·C_in + 1)·filters``, dense ``(inputs + 1)·units``, pooling 0.
    Multiply-accumulates: conv ``H_out·W_out·filters·F·F·C_in``, dense ``inputs·units``,
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
            if layer_type == "conv":
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
        if layer["type"] == "conv":
            model_layers.append(keras.layers.Conv2D(
                layer["filters"], layer["kernel"], strides=layer["stride"], padding=keras_padding,
                dilation_rate=dilation, activation=layer["activation"], name=layer_name))
        else:
            pool_class = (keras.layers.MaxPooling2D if layer["type"] == "max_pool"
                          else keras.layers.AveragePooling2D)
            model_layers.append(pool_class(layer["kernel"], strides=layer["stride"],
                                           padding=keras_padding, name=layer_name))
    return keras.Sequential(model_layers, name=_keras_name(name))


# ---------------------------------------------------------------------------------------------
# Convolution playground


def sample_image(size: int = SAMPLE_IMAGE_SIZE, width: int | None = None) -> np.ndarray:
    """A traffic-sign-like picture drawn by code: a red-ringed speed-limit sign on a post.

    Args:
        size: side length in pixels (the height when ``width`` is given).
        width: width in pixels (default: ``size``); non-square pictures are drawn square at
            the larger side and resized.

    Returns:
        A ``(size, width, 3)`` uint8 RGB array, identical on every call.
    """
    import cv2

    size = _positive(size, "size")
    if width is not None and _positive(width, "width") != size:
        square = sample_image(max(size, width, 16))
        return cv2.resize(square, (width, size), interpolation=cv2.INTER_AREA)
    if size < 16:
        return cv2.resize(sample_image(16), (size, size), interpolation=cv2.INTER_AREA)
    rows = np.linspace(0.0, 1.0, size)[:, None]
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[..., 0] = (150 + 60 * rows).astype(np.uint8)  # sky: light at the top, greyer below
    image[..., 1] = (190 + 30 * rows).astype(np.uint8)
    image[..., 2] = (235 - 20 * rows).astype(np.uint8)
    image[int(size * 0.8):, :] = (96, 128, 80)  # grass
    centre = (size // 2, int(size * 0.42))
    radius = int(size * 0.36)
    post = max(1, size // 24)
    cv2.rectangle(image, (centre[0] - post, centre[1]), (centre[0] + post, size - 1), (90, 90, 90), -1)
    cv2.circle(image, centre, radius, (200, 20, 30), -1, lineType=cv2.LINE_AA)
    cv2.circle(image, centre, int(radius * 0.74), (245, 245, 245), -1, lineType=cv2.LINE_AA)
    scale = size / 64 * 0.9
    thickness = max(1, round(size / 32))
    (text_width, text_height), _ = cv2.getTextSize("50", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    origin = (centre[0] - text_width // 2, centre[1] + text_height // 2)
    cv2.putText(image, "50", origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), thickness,
                lineType=cv2.LINE_AA)
    return image


def image_from_bytes(data: bytes, max_side: int = MAX_PLAYGROUND_SIDE) -> np.ndarray:
    """Decodes an uploaded image (EXIF-oriented RGB) and shrinks it to at most ``max_side``.

    Args:
        data: the file's bytes.
        max_side: the longer side after resizing (images are never enlarged).

    Returns:
        A uint8 RGB array.

    Raises:
        ValueError: when the bytes are empty, not an image, too large, have too many pixels
            (a decompression bomb) or are corrupt (``core.imaging.read_image``'s reason).
    """
    from PIL import Image

    from core.imaging import ImageError, read_image

    try:
        image = read_image(data)  # bounded: file size, pixel count, corrupt files
    except ImageError as error:
        raise ValueError(f"Could not read the upload as an image: {error}") from None
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def to_grayscale(image) -> np.ndarray:
    """Luma (ITU-R BT.601) in [0, 1] as float64; a 2-D input is only rescaled from uint8."""
    array = np.asarray(image)
    values = array.astype(np.float64)
    if array.dtype == np.uint8:
        values /= 255.0
    if values.ndim == 2:
        return values
    if values.ndim == 3 and values.shape[2] in (1, 3, 4):
        if values.shape[2] == 1:
            return values[..., 0]
        return values[..., :3] @ np.array([0.299, 0.587, 0.114])
    raise ValueError(f"image must be H×W or H×W×(1, 3 or 4), received shape {array.shape}")


def kernel_weights(name: str, custom=None) -> np.ndarray:
    """A named kernel from ``KERNELS``, or ``custom`` numbers for ``name="custom"``.

    Args:
        name: ``"edge"``, ``"blur"``, ``"sharpen"``, ``"emboss"`` or ``"custom"``.
        custom: a square 3×3 or 5×5 array-like of numbers (for ``"custom"``).

    Returns:
        A float64 square array.
    """
    if name in KERNELS:
        return KERNELS[name].copy()
    if name != "custom":
        raise ValueError(f"Unknown kernel {name!r}; expected one of {(*KERNELS, 'custom')}")
    try:
        weights = np.asarray(custom, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"custom kernel must hold numbers only, received {custom!r}") from None
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or \
            weights.shape[0] not in CUSTOM_KERNEL_SIZES:
        raise ValueError(f"custom kernel must be 3×3 or 5×5, received shape {weights.shape}")
    if not np.all(np.isfinite(weights)):
        raise ValueError("custom kernel has empty or non-finite cells; fill every cell with a number")
    return weights


def pad_image(image, before: int, after: int | None = None, value: float = 0.0) -> np.ndarray:
    """Pads a 2-D array with ``before`` rows/columns at the top/left and ``after`` at the
    bottom/right (default: ``before``), filled with ``value``."""
    after = before if after is None else after
    return np.pad(np.asarray(image, dtype=np.float64), ((before, after), (before, after)),
                  constant_values=value)


def convolve2d(image, kernel, stride=1, padding=0, dilation=1) -> np.ndarray:
    """2-D cross-correlation, as a CNN convolution layer computes it (no kernel flip, no bias).

    Args:
        image: 2-D array (one channel).
        kernel: square 2-D weights.
        stride: stride S on both axes.
        padding: zero-padding P on every side, or ``"valid"``/``"same"`` (Keras semantics:
            ``"same"`` puts the extra pixel, if any, at the bottom/right).
        dilation: dilation rate d.

    Returns:
        The float64 feature map, of size ``conv_output_size`` per axis.
    """
    image = np.asarray(image, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, received shape {image.shape}")
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be square and 2-D, received shape {kernel.shape}")
    stride = _positive(stride, "stride")
    dilation = _positive(dilation, "dilation")
    size = kernel.shape[0]
    (top, bottom) = keras_padding_amounts(image.shape[0], size, stride, padding, dilation)
    (left, right) = keras_padding_amounts(image.shape[1], size, stride, padding, dilation)
    effective = dilated_kernel_size(size, dilation)
    for axis, (low, high) in enumerate(((top, bottom), (left, right))):
        if effective > image.shape[axis] + low + high:
            raise ValueError(f"The dilated kernel ({effective}) does not fit the padded input "
                             f"(received image shape {image.shape}, padding={padding!r}, "
                             f"dilation={dilation})")
    padded = np.pad(image, ((top, bottom), (left, right)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (effective, effective))
    windows = windows[::stride, ::stride, ::dilation, ::dilation]
    return np.einsum("ijkl,kl->ij", windows, kernel)


def pool2d(feature_map, pool_size=2, stride=None, mode="max", padding="valid") -> np.ndarray:
    """Max or average pooling of a 2-D array, as Keras' MaxPooling2D/AveragePooling2D do.

    With ``padding="same"`` the padded cells never win a max and are left out of an average
    (TensorFlow's semantics).

    Args:
        feature_map: 2-D array.
        pool_size: window size.
        stride: stride (default ``pool_size``).
        mode: ``"max"`` or ``"average"``.
        padding: ``"valid"`` or ``"same"``.

    Returns:
        The pooled float64 array.
    """
    values = np.asarray(feature_map, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"feature_map must be 2-D, received shape {values.shape}")
    if mode not in POOL_MODES:
        raise ValueError(f"mode must be one of {POOL_MODES}, received {mode!r}")
    pool_size = _positive(pool_size, "pool_size")
    stride = pool_size if stride is None else _positive(stride, "stride")
    if not isinstance(padding, str) or padding.lower() not in KERAS_PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same', received {padding!r}")
    for axis in (0, 1):
        keras_output_size(values.shape[axis], pool_size, stride, padding)  # validates the fit
    top, bottom = keras_padding_amounts(values.shape[0], pool_size, stride, padding)
    left, right = keras_padding_amounts(values.shape[1], pool_size, stride, padding)
    padded = np.pad(values, ((top, bottom), (left, right)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (pool_size, pool_size))
    windows = windows[::stride, ::stride]
    reduce = np.nanmax if mode == "max" else np.nanmean
    return reduce(windows, axis=(2, 3))
