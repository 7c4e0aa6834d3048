"""Geometry of convolution and pooling: output sizes, Keras padding, receptive fields.

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

from core.concepts.checks import AttrDict, _as_int, _non_negative, _positive

# Coordinate of the first input pixel's centre (pixel i spans [i, i + 1)).
INPUT_START = 0.5

KERAS_PADDINGS = ("valid", "same")
POOL_MODES = ("max", "average")


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
