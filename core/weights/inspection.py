"""Recognising a weights file: which backbone variant it fits, checked layer by layer.

``identify(path, backbone)`` opens the file with h5py (never trusting its name), reads every
layer's weight shapes, guesses the width multiplier from the first convolution, builds the
candidate architectures with random weights and compares the shapes of every layer. The match is
then loaded into the model for real, so a truncated file fails here and never at training time.

Both formats are understood: Keras 3 ``.weights.h5`` (groups ``layers/<name>/vars/<i>``) and
the legacy ``.h5`` Keras' downloads use (a ``layer_names`` attribute, ``weight_names`` per layer).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.weights.catalogue import IMAGENET_INPUT_SIZE, NO_TOP, TOP, VARIANTS

KERAS3_FORMAT = "keras3"
LEGACY_FORMAT = "legacy"
FIRST_CONV_KEYS = ("layers/conv2d", "block1_conv1", "conv1", "Conv1")


class WeightsFileError(ValueError):
    """A file is not usable weights for the backbone asked for (the message says why, in one line)."""


@dataclass(frozen=True)
class Identified:
    """What a weights file is.

    Attributes:
        backbone: the backbone it fits.
        variant: ``no_top`` or ``top``.
        alpha: the width multiplier (None for VGG16).
        file_format: ``keras3`` or ``legacy``.
        num_layers: layers holding weights.
        num_values: weight values in total.
    """

    backbone: str
    variant: str
    alpha: float | None
    file_format: str
    num_layers: int
    num_values: int


def read_layout(path: str | os.PathLike) -> tuple[str, dict[str, list[tuple]]]:
    """Reads a weights file's layers and their weight shapes, without loading the values.

    Returns:
        ``(file_format, {layer key: [shape, ...]})``, layers with no weights left out.

    Raises:
        WeightsFileError: not HDF5, or HDF5 without Keras weights.
    """
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise WeightsFileError(f"{path.name} is not a Keras weights file: it is not HDF5 "
                               f"({str(error).split(';')[0].strip()})") from None
    with handle:
        if "layer_names" in handle.attrs:
            layout = {}
            for raw in handle.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                group = handle[name]
                weight_names = [w.decode() if isinstance(w, bytes) else str(w)
                                for w in group.attrs.get("weight_names", [])]
                shapes = [tuple(group[weight].shape) for weight in weight_names]
                if shapes:
                    layout[name] = shapes
            return LEGACY_FORMAT, layout
        if "layers" in handle:
            layout = {}

            def visit(name, item):
                if isinstance(item, h5py.Group) and name.endswith("/vars") and len(item):
                    layout[name[: -len("/vars")]] = [tuple(item[str(index)].shape)
                                                    for index in range(len(item))]

            handle.visititems(lambda name, item: visit(name, item))
            return KERAS3_FORMAT, layout
    raise WeightsFileError(f"{path.name} is an HDF5 file but holds no Keras weights "
                           "(neither a 'layers' group nor a 'layer_names' attribute)")


def model_layout(model, file_format: str) -> dict[str, list[tuple]]:
    """The layout a file of ``file_format`` written from ``model`` would have."""
    if file_format == LEGACY_FORMAT:
        return {layer.name: [tuple(weight.shape) for weight in layer.weights]
                for layer in model.layers if layer.weights}
    with tempfile.TemporaryDirectory(prefix="tllab-layout-") as folder:
        target = Path(folder) / "model.weights.h5"
        model.save_weights(target)
        return read_layout(target)[1]


def first_conv_filters(layout: dict[str, list[tuple]]) -> int | None:
    """Output channels of the file's first convolution (what the width multiplier sets)."""
    for key in FIRST_CONV_KEYS:
        shapes = layout.get(key)
        if shapes and len(shapes[0]) == 4:
            return int(shapes[0][-1])
    return None


def _candidate_alphas(module, filters: int | None) -> list:
    return [alpha for alpha in module.ALPHAS if filters is None or module.first_conv_filters(alpha) == filters]


def _first_difference(found: dict, expected: dict) -> str:
    for key, shapes in expected.items():
        if key not in found:
            return f"layer {key!r} is missing"
        if found[key] != shapes:
            return f"layer {key!r} holds shapes {found[key]}, expected {shapes}"
    extra = [key for key in found if key not in expected]
    if extra:
        return f"{len(extra)} layer(s) too many, e.g. {extra[0]!r}"
    return "no difference"


def identify(path: str | os.PathLike, backbone: str, display_name: str | None = None) -> Identified:
    """Works out which variant of ``backbone`` a weights file is, and proves it loads.

    Args:
        path: the file (any name).
        backbone: ``vgg16``, ``mobilenetv2`` or ``mobilenet``.
        display_name: how messages name the file (default its name).

    Returns:
        An ``Identified``.

    Raises:
        WeightsFileError: one line naming the mismatch (not HDF5, wrong architecture, wrong
            shapes, truncated data).
    """
    from core.models import backbones

    module = backbones.backbone_module(backbone)
    path = Path(path)
    name = display_name or path.name
    try:
        return _identify(path, backbone, module)
    except WeightsFileError as error:
        raise WeightsFileError(str(error).replace(path.name, name)) from None


def _identify(path: Path, backbone: str, module) -> Identified:
    file_format, layout = read_layout(path)
    if not layout:
        raise WeightsFileError(f"{path.name} holds no weights at all")
    filters = first_conv_filters(layout)
    alphas = _candidate_alphas(module, filters)
    if not alphas:
        raise WeightsFileError(
            f"{path.name} does not fit {backbone}: its first convolution has {filters} filters, "
            f"which matches no {backbone} width (alpha in {module.ALPHAS})")
    closest = None
    for alpha in alphas:
        for variant in VARIANTS:
            model = module.build_base(IMAGENET_INPUT_SIZE, None, include_top=variant == TOP,
                                      **({} if alpha is None else {"alpha": alpha}))
            expected = model_layout(model, file_format)
            if expected == layout:
                _load_for_real(model, path, file_format)
                return Identified(backbone, variant, alpha, file_format, len(layout),
                                  sum(_size(shape) for shapes in layout.values() for shape in shapes))
            if closest is None or variant == NO_TOP:
                closest = (alpha, variant, _first_difference(layout, expected))
    alpha, variant, difference = closest
    width = "" if alpha is None else f" alpha {alpha}"
    raise WeightsFileError(f"{path.name} does not fit {backbone}{width} (with or without top): "
                           f"compared with the {variant} variant, {difference}")


def _size(shape: tuple) -> int:
    total = 1
    for dimension in shape:
        total *= int(dimension)
    return total


def _load_for_real(model, path: Path, file_format: str) -> None:
    suffix = ".weights.h5" if file_format == KERAS3_FORMAT else ".h5"
    with tempfile.TemporaryDirectory(prefix="tllab-weights-") as folder:
        # Keras picks its loader from the name: give it the right suffix whatever the file is called.
        link = Path(folder) / f"candidate{suffix}"
        os.symlink(path.resolve(), link)
        try:
            model.load_weights(link)
        except Exception as error:  # Keras/h5py raise many types for a damaged file
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise WeightsFileError(f"{path.name} could not be read completely (truncated or "
                                   f"corrupt?): {message}") from None
