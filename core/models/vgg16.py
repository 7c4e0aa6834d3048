"""VGG16 (Simonyan & Zisserman 2015), the study's backbone: its base, preprocessing and blocks.

One of the three backbone builders (``core.models.backbones`` lists them); the transfer model
around any of them is built by ``core.models.transfer``. Keras' layer names are kept
(``block1_conv1`` ... ``block5_pool``), so Grad-CAM can look at ``block5_conv3``.
"""

from __future__ import annotations

import os
import re

import keras

from core.models.transfer_layers import CaffePreprocessing

NAME = "vgg16"
TITLE = "VGG16 (the study)"
PREPROCESSING_NAME = "vgg16_preprocessing"
FEATURE_LAYER = "block5_pool"
LAST_CONV_LAYER = "block5_conv3"
DEFAULT_ALPHA = None
ALPHAS = (None,)
NUM_BLOCKS = 5
# Fine-tuning unfreezes the last block, block5 (the study).
DEFAULT_FINE_TUNE_BLOCKS = 1
CONV_LAYERS = tuple(
    f"block{block}_conv{index}"
    for block, count in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
    for index in range(1, count + 1)
)
_BLOCK_PATTERN = re.compile(r"^block(\d+)_")


def build_base(image_size: int = 224, weights_file: str | os.PathLike | None = None, *,
               include_top: bool = False, alpha: float | None = None) -> keras.Model:
    """Builds Keras' VGG16.

    Args:
        image_size: square input size (224 with the top).
        weights_file: a ``.h5``/``.weights.h5`` file, or None for random weights.
        include_top: with the 1,000-class ImageNet classifier.
        alpha: must be None (VGG16 has no width multiplier).

    Returns:
        The Keras Applications model.
    """
    if alpha is not None:
        raise ValueError(f"VGG16 has no width multiplier; alpha must be None, received {alpha!r}")
    return keras.applications.VGG16(
        include_top=include_top, weights=None if weights_file is None else str(weights_file),
        input_shape=(image_size, image_size, 3))


def preprocessing_layer() -> keras.layers.Layer:
    """Caffe mode, as VGG16 was trained: RGB -> BGR, minus the ImageNet means, no scaling."""
    return CaffePreprocessing(name=PREPROCESSING_NAME)


def block_index(layer_name: str) -> int | None:
    """The block (1..5) a layer belongs to, or None (``block5_conv3`` -> 5)."""
    match = _BLOCK_PATTERN.match(layer_name)
    return int(match.group(1)) if match else None


def first_conv_filters(alpha: float | None = None) -> int:
    """Filters of ``block1_conv1`` (what a weights file's first kernel must have)."""
    return 64
