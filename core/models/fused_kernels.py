"""Fused kernels that a Keras backend has and ``keras.ops`` does not offer (backend dispatch).

Keras 3's ``BatchNormalization`` is written with ``keras.ops``: on the TensorFlow backend its
training step is a mean, a squared difference, a second mean, a scale and a shift, each a pass
over the feature maps, and the gradient of that chain is a dozen more passes (tiles, sums,
products). TensorFlow has the whole of it as one kernel, ``FusedBatchNormV3``, and one for its
gradient, ``FusedBatchNormGradV3`` (oneDNN's, where its CPU kernels are on). In the plus LeNet,
whose first stage normalises 32 x 32 x 24 maps, the unfused ops took about a sixth of a
training step's CPU time in a TensorFlow profile.

Each function here returns None when the running backend has no such kernel or the input is one
it does not take; the caller then computes the same thing with ``keras.ops``. This is the only
module under ``core/models`` that names a backend's own ops, as Keras keeps them under
``keras/src/backend/<name>/``; model code calls these functions, never the backend.
"""

from __future__ import annotations

import keras

FUSED_BATCH_NORM_RANKS = (2, 4)  # (batch, channels) and (batch, height, width, channels)
FUSED_BATCH_NORM_DTYPE = "float32"


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
