"""``PartialConv2D``: a convolution whose output maps each read only some input maps.

LeNet-5's C3 (LeCun et al. 1998, table I) is the classic example. Each output map owns one
kernel of shape ``(F, F, len(inputs), 1)`` and one bias, so the layer's trainable parameters
are exactly ``Σ (F·F·|inputs| + 1)`` (1,516 for C3), not those of a masked full kernel.
Backend-agnostic: ``keras.ops`` only. This module imports Keras; ``core.concepts`` loads it
lazily (``build_keras_model``), never at import time.
"""

from __future__ import annotations

import keras

from core.concepts.connections import check_connections


class PartialConv2D(keras.layers.Layer):
    """A 2-D convolution with a connection table between input and output maps.

    Args:
        connections: for each output map, the ids of the input maps it reads.
        kernel_size: side F of the square kernels.
        strides: stride on both axes.
        padding: ``"valid"`` or ``"same"``.
        activation: a Keras activation name or callable (None: linear).
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ...).
    """

    def __init__(self, connections, kernel_size: int = 5, strides: int = 1, padding: str = "valid",
                 activation=None, **kwargs):
        super().__init__(**kwargs)
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', received {padding!r}")
        self.connections = [tuple(int(index) for index in inputs) for inputs in connections]
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.map_kernels = []
        self.bias = None

    def build(self, input_shape):
        self.connections = list(check_connections(self.connections, int(input_shape[-1])))
        self.map_kernels = [
            self.add_weight(name=f"kernel_map{output}", shape=(self.kernel_size, self.kernel_size,
                                                               len(inputs), 1),
                            initializer="glorot_uniform")
            for output, inputs in enumerate(self.connections)
        ]
        self.bias = self.add_weight(name="bias", shape=(len(self.connections),), initializer="zeros")

    def call(self, inputs):
        maps = [
            keras.ops.conv(keras.ops.take(inputs, list(ids), axis=-1), kernel,
                           strides=self.strides, padding=self.padding)
            for ids, kernel in zip(self.connections, self.map_kernels)
        ]
        return self.activation(keras.ops.concatenate(maps, axis=-1) + self.bias)

    def compute_output_shape(self, input_shape):
        sides = []
        for side in input_shape[1:3]:
            if side is None:
                sides.append(None)
            elif self.padding == "same":
                sides.append(-(-side // self.strides))
            else:
                sides.append((side - self.kernel_size) // self.strides + 1)
        return (input_shape[0], *sides, len(self.connections))

    def get_config(self):
        config = super().get_config()
        config.update(connections=[list(inputs) for inputs in self.connections],
                      kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
                      activation=keras.activations.serialize(self.activation))
        return config
