"""Custom Keras layers used by the LeNet family (registered for safe_mode loading).

Written with ``keras.ops`` and ``keras.random`` only, so they run on every Keras backend.
"""

from __future__ import annotations

import math

import keras
from keras import ops

PACKAGE = "tllab"


def gaussian_kernel_1d(kernel_size: int, sigma: float) -> list[float]:
    """Normalised 1-D Gaussian weights of odd length ``kernel_size``."""
    half = kernel_size // 2
    weights = [math.exp(-(offset * offset) / (2.0 * sigma * sigma)) for offset in range(-half, half + 1)]
    total = sum(weights)
    return [weight / total for weight in weights]


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomGaussianBlur(keras.layers.Layer):
    """Blurs a random share of the images of a batch with a Gaussian kernel, in training only.

    The study's "blur" augmentation as an in-graph layer: at inference (``training=False``)
    images pass through unchanged.

    Args:
        probability: share of images blurred in each batch, in [0, 1].
        kernel_size: odd side of the Gaussian kernel (3 or more).
        sigma: standard deviation of the Gaussian in pixels.
        seed: seed of the random choice, or None.
    """

    def __init__(self, probability: float = 0.25, kernel_size: int = 3, sigma: float = 0.8,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(probability) <= 1.0:
            raise ValueError(f"probability must be in [0, 1], received {probability!r}")
        if int(kernel_size) < 3 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer >= 3, received {kernel_size!r}")
        if float(sigma) <= 0:
            raise ValueError(f"sigma must be positive, received {sigma!r}")
        self.probability = float(probability)
        self.kernel_size = int(kernel_size)
        self.sigma = float(sigma)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def _blur(self, images):
        channels = images.shape[-1]
        weights = gaussian_kernel_1d(self.kernel_size, self.sigma)
        kernel_2d = [[row * column for column in weights] for row in weights]
        kernel = ops.convert_to_tensor(kernel_2d, dtype=self.compute_dtype)
        kernel = ops.tile(ops.reshape(kernel, (self.kernel_size, self.kernel_size, 1, 1)),
                          (1, 1, channels, 1))
        return ops.depthwise_conv(images, kernel, strides=1, padding="same")

    def call(self, inputs, training=None):
        if not training or self.probability == 0.0:
            return inputs
        inputs = ops.cast(inputs, self.compute_dtype)
        batch = ops.shape(inputs)[0]
        draw = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
        chosen = ops.cast(ops.less(draw, self.probability), self.compute_dtype)
        return chosen * self._blur(inputs) + (1.0 - chosen) * inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(probability=self.probability, kernel_size=self.kernel_size,
                      sigma=self.sigma, seed=self.seed)
        return config
