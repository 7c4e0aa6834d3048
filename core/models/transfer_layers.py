"""Custom Keras layers used by transfer models (registered for safe_mode loading).

Normalisation lives inside the model (docs/ARCHITECTURE.md): a saved ``model.keras`` takes
uint8-valued float images of shape (S, S, 3) and applies its backbone's preprocessing itself.
"""

from __future__ import annotations

import keras
from keras import ops

REGISTERED_PACKAGE = "tllab_transfer"

# ImageNet channel means in BGR order, as used by Keras' caffe-mode ``preprocess_input``.
IMAGENET_BGR_MEANS = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package=REGISTERED_PACKAGE)
class CaffePreprocessing(keras.layers.Layer):
    """VGG16's caffe-mode preprocessing: RGB -> BGR, subtract ImageNet means, no scaling.

    The same arithmetic as ``keras.applications.vgg16.preprocess_input`` on channels-last
    RGB input in the 0..255 range, written with ``keras.ops`` so it runs on every backend.

    Args:
        means: per-channel means to subtract, in BGR order.
        **kwargs: base ``Layer`` arguments (``name``, ``dtype``...).
    """

    def __init__(self, means=IMAGENET_BGR_MEANS, **kwargs):
        super().__init__(**kwargs)
        means = tuple(float(value) for value in means)
        if len(means) != 3:
            raise ValueError(f"means must hold 3 values (B, G, R), received {len(means)}")
        self.means = means

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels != 3:
            raise ValueError(
                f"CaffePreprocessing expects RGB input with 3 channels, received shape {input_shape}"
            )
        self.built = True

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        bgr = ops.flip(inputs, axis=-1)
        means = ops.convert_to_tensor(self.means, dtype=self.compute_dtype)
        return bgr - means

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"means": list(self.means)})
        return config


def scale_to_unit_range(name: str) -> keras.layers.Layer:
    """``x / 127.5 - 1``: the MobileNets' preprocessing (``mobilenet_v2.preprocess_input``)."""
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=name)


def build_application(application, image_size: int, weights_file, *, include_top: bool,
                      alpha: float) -> keras.Model:
    """Calls a width-multiplied Keras application (MobileNet, MobileNetV2) with a square input.

    Args:
        application: ``keras.applications.MobileNet`` or ``MobileNetV2``.
        image_size: input side in pixels.
        weights_file: a weights file, or None for random weights.
        include_top: with the 1,000-class classifier.
        alpha: the width multiplier.
    """
    return application(input_shape=(image_size, image_size, 3), alpha=float(alpha),
                       include_top=include_top,
                       weights=None if weights_file is None else str(weights_file))

