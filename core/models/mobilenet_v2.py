"""MobileNetV2 (Sandler et al. 2018): a light ImageNet backbone for CPU labs.

Blocks, for fine-tuning: the stem and ``expanded_conv`` are block 0, ``block_1`` ...
``block_16`` are the inverted-residual blocks, and the final 1x1 convolution (``Conv_1``,
``Conv_1_bn``, ``out_relu``) belongs to the last block, 16. "Unfreeze the last N blocks"
unfreezes blocks 17 - N .. 16.
"""

from __future__ import annotations

import os
import re

import keras

from core.models.transfer_layers import build_application, scale_to_unit_range

NAME = "mobilenetv2"
TITLE = "MobileNetV2 (light, for CPU labs)"
PREPROCESSING_NAME = "mobilenetv2_preprocessing"
FEATURE_LAYER = "out_relu"
LAST_CONV_LAYER = "out_relu"
DEFAULT_ALPHA = 1.0
ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
NUM_BLOCKS = 16
# The last stage at 7x7 (blocks 14-16, 160 channels) plus the final 1x1 convolution.
DEFAULT_FINE_TUNE_BLOCKS = 3
_BLOCK_PATTERN = re.compile(r"^block_(\d+)_")
_TOP_CONV_LAYERS = ("Conv_1", "Conv_1_bn", "out_relu")


def build_base(image_size: int = 224, weights_file: str | os.PathLike | None = None, *,
               include_top: bool = False, alpha: float | None = DEFAULT_ALPHA) -> keras.Model:
    """Builds Keras' MobileNetV2.

    Args:
        image_size: square input size (224 with the top; no-top weights fit any size >= 32).
        weights_file: a ``.h5``/``.weights.h5`` file, or None for random weights.
        include_top: with the 1,000-class ImageNet classifier.
        alpha: width multiplier (1.0 for the shared ImageNet weights).

    Returns:
        The Keras Applications model.
    """
    return build_application(keras.applications.MobileNetV2, image_size, weights_file,
                             include_top=include_top, alpha=DEFAULT_ALPHA if alpha is None else alpha)


def preprocessing_layer() -> keras.layers.Layer:
    """``x / 127.5 - 1``, what ``keras.applications.mobilenet_v2.preprocess_input`` does."""
    return scale_to_unit_range(PREPROCESSING_NAME)


def block_index(layer_name: str) -> int | None:
    """The block (0..16) a layer belongs to, or None for layers outside the base."""
    match = _BLOCK_PATTERN.match(layer_name)
    if match:
        return int(match.group(1))
    if layer_name in _TOP_CONV_LAYERS:
        return NUM_BLOCKS
    if layer_name.startswith(("Conv1", "bn_Conv1", "expanded_conv")):
        return 0
    return None


def first_conv_filters(alpha: float | None = DEFAULT_ALPHA) -> int:
    """Filters of ``Conv1`` for a width multiplier: 32 x alpha rounded to a multiple of 8."""
    value = 32 * float(alpha)
    rounded = max(8, int(value + 4) // 8 * 8)
    if rounded < 0.9 * value:
        rounded += 8
    return rounded
