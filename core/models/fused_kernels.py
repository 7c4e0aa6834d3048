"""Fused kernels that a Keras backend has and ``keras.ops`` does not offer (backend dispatch).

Keras 3's ``BatchNormalization`` is written with ``keras.ops``: on the TensorFlow backend its
training step is a mean, a squared difference, a second mean, a scale and a shift, each a pass
over the feature maps, and the gradient of that chain is a dozen more passes (tiles, sums,
products). TensorFlow has the whole of it as one kernel, ``FusedBatchNormV3``, and one for its
gradient, ``FusedBatchNormGradV3`` (oneDNN's, where its CPU kernels are on). In the plus LeNet,
whose first stage normalises 32 x 32 x 24 maps, the unfused ops took about a sixth of a
training step's CPU time in a TensorFlow profile.

``projective_transform`` is the second: Keras' ``affine_transform`` is TensorFlow's
``ImageProjectiveTransformV3`` there, a kernel that evaluates each output pixel on its own
(about 22 ns a pixel on one core here: three quarters of a millisecond for 64 images of
32 x 32, an eighth of the seed LeNet's training step). The same bilinear sampling written as
gathers and compiled by XLA takes a quarter of that.

Each function here returns None when the running backend has no such kernel or the input is one
it does not take; the caller then computes the same thing with ``keras.ops``. This is the only
module under ``core/models`` that names a backend's own ops, as Keras keeps them under
``keras/src/backend/<name>/``; model code calls these functions, never the backend.
"""

from __future__ import annotations

import functools

import keras

FUSED_BATCH_NORM_RANKS = (2, 4)  # (batch, channels) and (batch, height, width, channels)
FUSED_BATCH_NORM_DTYPE = "float32"
# What ``projective_transform`` compiles; other fill modes ("reflect", "wrap") and dtypes take
# the backend's ``affine_transform``.
COMPILED_WARP_FILL_MODES = ("nearest", "constant")
COMPILED_WARP_INTERPOLATIONS = ("bilinear", "nearest")
COMPILED_WARP_DTYPE = "float32"


def batch_norm_training(inputs, scale, offset, epsilon: float):
    """Normalises ``inputs`` over all axes but the last with their own batch statistics.

    Computes what Keras' ``BatchNormalization`` computes in training, with the moments from
    ``keras.ops.moments`` (the variance is the biased one, divided by the count):
    ``(inputs - mean) / sqrt(variance + epsilon) * scale + offset``.

    Args:
        inputs: a float32 tensor of rank 2 or 4, channels last.
        scale: per-channel factors (gamma), float32, one per channel.
        offset: per-channel offsets (beta), float32, one per channel.
        epsilon: added to the variance before its square root.

    Returns:
        ``(outputs, mean, variance)`` from one fused kernel, or None when this backend has none
        for such inputs (every backend but TensorFlow; other ranks or dtypes).
    """
    if keras.backend.backend() != "tensorflow":
        return None
    if len(inputs.shape) not in FUSED_BATCH_NORM_RANKS or \
            keras.backend.standardize_dtype(inputs.dtype) != FUSED_BATCH_NORM_DTYPE:
        return None
    import tensorflow as tf

    maps = inputs if len(inputs.shape) == 4 else inputs[:, None, None, :]
    outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
        maps, scale, offset, epsilon=float(epsilon), is_training=True)
    # In training the kernel returns the variance divided by count - 1 (for the moving average
    # of TensorFlow's own layers); Keras divides by the count.
    count = tf.cast(tf.size(maps) // tf.shape(maps)[-1], unbiased_variance.dtype)
    variance = unbiased_variance * (count - 1.0) / count
    if len(inputs.shape) == 2:
        outputs = outputs[:, 0, 0, :]
    return outputs, mean, variance


def projective_transform(images, transforms, interpolation: str = "bilinear",
                         fill_mode: str = "nearest", fill_value: float = 0.0):
    """Resamples each image at the points its projective transform maps the output pixels to.

    Computes what ``keras.ops.image.affine_transform`` computes on the TensorFlow backend
    (``ImageProjectiveTransformV3``; the same values up to float rounding), as one XLA-compiled
    function of gathers. For output pixel (x, y) and a row (a0, a1, a2, b0, b1, b2, c0, c1)
    of ``transforms`` the input is sampled at ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k)
    with k = c0 x + c1 y + 1. "nearest" fill clamps that point into the image; "constant"
    reads ``fill_value`` for every pixel outside it. "bilinear" blends the four pixels around
    the point, "nearest" takes the closest (halves rounded away from zero).

    Args:
        images: float32 (batch, height, width, channels), sides known.
        transforms: float32 (batch, 8), one row per image (``RandomAffine.transforms``).
        interpolation: "bilinear" or "nearest".
        fill_mode: "nearest" or "constant".
        fill_value: the value outside the image for "constant".

    Returns:
        The resampled images, or None where this backend has no compiled function for them
        (every backend but TensorFlow; other fill modes, dtypes or unknown sides; a TensorFlow
        without XLA).
    """
    if keras.backend.backend() != "tensorflow":
        return None
    if fill_mode not in COMPILED_WARP_FILL_MODES or interpolation not in COMPILED_WARP_INTERPOLATIONS:
        return None
    if len(images.shape) != 4 or None in tuple(images.shape[1:]) or \
            keras.backend.standardize_dtype(images.dtype) != COMPILED_WARP_DTYPE:
        return None
    warp = _compiled_warp(interpolation, fill_mode)
    if warp is None:
        return None
    import tensorflow as tf

    return warp(images, tf.cast(transforms, COMPILED_WARP_DTYPE),
                tf.constant(float(fill_value), COMPILED_WARP_DTYPE))


@functools.cache
def _compiled_warp(interpolation: str, fill_mode: str):
    """The XLA-compiled sampler for one interpolation and fill mode, or None without XLA.

    Built once per process; the first build compiles a 2 x 2 image eagerly, so a TensorFlow
    that cannot compile falls back to ``affine_transform`` instead of failing mid-training.
    """
    import tensorflow as tf

    def sample(images, transforms, fill_value):
        batch = tf.shape(images)[0]
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        rows, columns = tf.meshgrid(tf.range(height, dtype=tf.float32),
                                    tf.range(width, dtype=tf.float32), indexing="ij")
        output_x, output_y = tf.reshape(columns, (1, -1)), tf.reshape(rows, (1, -1))
        a0, a1, a2, b0, b1, b2, c0, c1 = tf.unstack(transforms[:, :, None], axis=1)
        projection = c0 * output_x + c1 * output_y + 1.0
        input_x = (a0 * output_x + a1 * output_y + a2) / projection
        input_y = (b0 * output_x + b1 * output_y + b2) / projection
        if fill_mode == "nearest":  # clamp the point into the image, as TensorFlow's kernel does
            input_x = tf.clip_by_value(input_x, 0.0, width - 1.0)
            input_y = tf.clip_by_value(input_y, 0.0, height - 1.0)
        pixels = tf.reshape(images, (batch, height * width, channels))

        def read(y, x):
            """Pixels at integer (y, x), ``fill_value`` outside the image."""
            inside = (y >= 0.0) & (y <= height - 1.0) & (x >= 0.0) & (x <= width - 1.0)
            index = (tf.cast(tf.clip_by_value(y, 0.0, height - 1.0), tf.int32) * width
                     + tf.cast(tf.clip_by_value(x, 0.0, width - 1.0), tf.int32))
            values = tf.gather(pixels, index, batch_dims=1)
            return tf.where(inside[:, :, None], values, fill_value)

        if interpolation == "nearest":
            def rounded(coordinate):  # std::round: halves away from zero
                return tf.sign(coordinate) * tf.floor(tf.abs(coordinate) + 0.5)
            sampled = read(rounded(input_y), rounded(input_x))
        else:
            floor_x, floor_y = tf.floor(input_x), tf.floor(input_y)
            ceil_x, ceil_y = floor_x + 1.0, floor_y + 1.0
            top = ((ceil_x - input_x)[:, :, None] * read(floor_y, floor_x)
                   + (input_x - floor_x)[:, :, None] * read(floor_y, ceil_x))
            bottom = ((ceil_x - input_x)[:, :, None] * read(ceil_y, floor_x)
                      + (input_x - floor_x)[:, :, None] * read(ceil_y, ceil_x))
            sampled = (ceil_y - input_y)[:, :, None] * top + (input_y - floor_y)[:, :, None] * bottom
        sampled = tf.where((projection == 0.0)[:, :, None], fill_value, sampled)
        return tf.reshape(sampled, (batch, height, width, channels))

    compiled = tf.function(sample, jit_compile=True)
    try:
        with tf.init_scope():  # eager, even while a model's graph is being traced
            compiled(tf.zeros((1, 2, 2, 1)), tf.constant([[1.0, 0, 0, 0, 1.0, 0, 0, 0]]),
                     tf.constant(0.0))
    except (tf.errors.OpError, ValueError, NotImplementedError):
        return None
    return compiled
