"""MobileNet v1 (Howard et al. 2017): depthwise-separable convolutions, width multiplier alpha.

Blocks, for fine-tuning: the stem (``conv1``) is block 0, each depthwise + pointwise pair
(``conv_dw_i``, ``conv_pw_i`` and ``conv_pad_i``) is block i, 1..13. "Unfreeze the last N
blocks" unfreezes blocks 14 - N .. 13.
"""

from __future__ import annotations

import os
import re

import keras

from core.models.transfer_layers import build_application, scale_to_unit_range

NAME = "mobilenet"
TITLE = "MobileNet v1 (lightest)"
PREPROCESSING_NAME = "mobilenet_preprocessing"
FEATURE_LAYER = "conv_pw_13_relu"
LAST_CONV_LAYER = "conv_pw_13_relu"
DEFAULT_ALPHA = 0.75
ALPHAS = (0.25, 0.5, 0.75, 1.0)
NUM_BLOCKS = 13
# The two 1024-channel (x alpha) blocks at 7x7.
DEFAULT_FINE_TUNE_BLOCKS = 2
_BLOCK_PATTERN = re.compile(r"^conv_(?:dw|pw|pad)_(\d+)")


def build_base(image_size: int = 224, weights_file: str | os.PathLike | None = None, *,
               include_top: bool = False, alpha: float | None = DEFAULT_ALPHA) -> keras.Model:
    """Builds Keras' MobileNet (v1).

    Args:
        image_size: square input size (224 with the top; no-top weights fit any size >= 32).
        weights_file: a ``.h5``/``.weights.h5`` file, or None for random weights.
        include_top: with the 1,000-class ImageNet classifier.
        alpha: width multiplier (0.75 for the shared ImageNet weights).

    Returns:
        The Keras Applications model.
    """
    return build_application(keras.applications.MobileNet, image_size, weights_file,
                             include_top=include_top, alpha=DEFAULT_ALPHA if alpha is None else alpha)


def preprocessing_layer() -> keras.layers.Layer:
    """``x / 127.5 - 1``, what ``keras.applications.mobilenet.preprocess_input`` does."""
    return scale_to_unit_range(PREPROCESSING_NAME)


def block_index(layer_name: str) -> int | None:
    """The block (0..13) a layer belongs to, or None for layers outside the base."""
    match = _BLOCK_PATTERN.match(layer_name)
    if match:
        return int(match.group(1))
    if layer_name.startswith("conv1"):
        return 0
    return None


def first_conv_filters(alpha: float | None = DEFAULT_ALPHA) -> int:
    """Filters of ``conv1`` for a width multiplier: int(32 x alpha)."""
    return int(32 * float(alpha))
