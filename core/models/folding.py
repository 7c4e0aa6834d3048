"""Batch norm and "same" zero padding folded into the layer they feed or follow: a faster copy
of a model for inference.

At inference a ``BatchNormalization`` layer is a fixed affine map per channel,
``gamma * (y - moving_mean) / sqrt(moving_variance + epsilon) + beta``. When ``y`` comes straight
from a convolution or a dense layer (and nothing else reads ``y``), that map can be folded into
the layer's kernel and bias: the kernel's output channels are scaled and the bias shifted. The
network then computes the same function (up to float rounding) with one layer instead of two.
On TensorFlow that also lets its graph optimiser fuse convolution, bias and activation into one
kernel; MobileNetV2's frozen base computed its features about 1.45x faster this way on 2 CPU
cores, and about 8 % faster again with its paddings folded (``bench/bench_feature_extraction.py``
measures the whole feature-extraction stage).

A ``ZeroPadding2D`` that adds exactly the zeros of "same" padding before a "valid" convolution
(as MobileNets do before each strided depthwise convolution) folds too: the convolution pads by
itself, and a copy of the whole feature map is saved (bit-identical output).

``fold_for_inference(model)`` returns such a copy. It is for inference only: the folded layers
hold a snapshot of the weights (training the copy, or the original, does not update the other),
and the removed batch norm layers no longer follow a ``training=True`` call.

``bias_after_pooling(model)`` is the one rewrite here for training: where a convolution feeds
only a max pooling, its bias is added after the pooling instead (a max commutes with adding a
constant), so the addition and the bias's gradient touch a quarter of the values, and on
TensorFlow's oneDNN kernels the convolution's weight gradient no longer sums its bias's
gradient over the whole map (about 3 % of the seed LeNet's training step). Every weight is
shared with the model, so fitting the copy trains the model.

Written with Keras layers and NumPy only, so it works on every Keras backend.
"""

from __future__ import annotations

import numpy as np

# Layers whose kernel's last axis is its output channels (one per batch norm channel).
FOLDABLE_CLASS_NAMES = ("Conv1D", "Conv2D", "Conv3D", "Dense")


def _graph_nodes(model) -> list:
    """Every node of a functional ``model``'s own graph, walked back from its outputs."""
    nodes, seen = [], set()
    stack = [_producer_node(tensor) for tensor in model.outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        nodes.append(node)
        stack.extend(_producer_node(tensor) for tensor in node.input_tensors)
    return nodes


def _exclusive_reads(nodes):
    """``(producer, layer, tensor)`` for each call among a graph's ``nodes`` in which ``layer``,
    called nowhere else, reads a single ``tensor`` that no other call reads, made by a
    ``producer`` also called only once: the pairs a rewrite may merge or reorder."""
    calls: dict[int, int] = {}
    readers: dict[int, int] = {}
    for node in nodes:
        calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
        for tensor in node.input_tensors:
            readers[id(tensor)] = readers.get(id(tensor), 0) + 1
    for node in nodes:
        layer = node.operation
        if len(node.input_tensors) != 1 or calls.get(id(layer)) != 1:
            continue
        tensor = node.input_tensors[0]
        producer = tensor._keras_history[0]
        if readers.get(id(tensor)) == 1 and calls.get(id(producer)) == 1:
            yield producer, layer, tensor


def _producer_node(tensor):
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


def _is_functional(model) -> bool:
    import keras

    return isinstance(model, keras.Model) and not isinstance(model, keras.Sequential) and bool(
        getattr(model, "_nodes_by_depth", None))


def _trains(layer) -> bool:
    """Whether fitting would update ``layer`` (a padding's flag does not matter: no weights)."""
    return bool(layer.trainable and layer.weights)


def _last_axis(layer, rank: int) -> bool:
    axis = layer.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return int(axis) in (-1, rank - 1)


def _foldable(producer, batch_norm, rank: int) -> bool:
    """Whether ``batch_norm`` (reading ``producer``'s output) can be folded into ``producer``."""
    import keras

    if not _last_axis(batch_norm, rank):
        return False
    # A batch norm after the producer's own activation (or a quantised or LoRA kernel) is not
    # an affine map of its kernel's output.
    config = producer.get_config()
    if (config.get("activation", "linear") != "linear" or config.get("lora_rank")
            or getattr(producer, "quantization_mode", None)):
        return False
    if isinstance(producer, keras.layers.DepthwiseConv2D):
        return producer.data_format == "channels_last"
    if type(producer).__name__ in FOLDABLE_CLASS_NAMES:
        return getattr(producer, "data_format", "channels_last") == "channels_last"
    return False


def same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """The zeros "same" padding adds before and after one spatial axis of ``size`` samples.

    As TensorFlow defines it (and Keras on every backend): the output has ceil(size / stride)
    samples, and any odd total puts the extra zero after.
    """
    output = -(-int(size) // int(stride))
    total = max((output - 1) * int(stride) + (int(kernel_size) - 1) * int(dilation) + 1 - int(size), 0)
    return total // 2, total - total // 2


def _pads_as_same(padding_layer, convolution, input_shape) -> bool:
    """Whether ``padding_layer`` (a ``ZeroPadding2D``) then ``convolution`` with "valid" padding
    equals ``convolution`` with "same" padding on an input of ``input_shape`` (N, H, W, C)."""
    import keras

    if (not isinstance(convolution, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
            or convolution.padding != "valid" or convolution.data_format != "channels_last"
            or padding_layer.data_format != "channels_last"):
        return False
    sizes = input_shape[1:3]
    if any(size is None for size in sizes):
        return False
    expected = tuple(same_padding(size, kernel, stride, dilation) for size, kernel, stride, dilation
                     in zip(sizes, convolution.kernel_size, convolution.strides,
                            convolution.dilation_rate))
    return tuple(tuple(int(side) for side in pair) for pair in padding_layer.padding) == expected


def find_folds(model, *, frozen_only: bool = False) -> dict:
    """What ``fold_for_inference`` would change in ``model``, nested functional models included.

    Two patterns qualify, each only where the layers are called once in the model's own graph
    and the first layer's output feeds nothing but the second (layers inside nested
    ``Sequential`` models are left alone), and with ``frozen_only`` only where no layer involved
    would train (frozen, or without weights):

    * a ``BatchNormalization`` over the last axis reading a ``Conv1D``/``Conv2D``/``Conv3D``/
      ``DepthwiseConv2D``/``Dense`` layer (channels last, no activation of its own): the batch
      norm is folded into it;
    * a ``ZeroPadding2D`` feeding a ``Conv2D``/``DepthwiseConv2D`` with "valid" padding, where
      the zeros are exactly those of "same" padding (as before MobileNets' strided convolutions):
      the convolution pads by itself.

    Returns:
        ``{id(layer): change}``: for a removed layer (the batch norm or the padding) the string
        ``"skip"``; for the layer that absorbs it a dict with ``batch_norm`` (the layer to fold,
        or None) and ``padding`` ("same", or None).
    """
    import keras

    changes: dict = {}

    def change_of(layer) -> dict:
        return changes.setdefault(id(layer), {"batch_norm": None, "padding": None})

    def scan(functional) -> None:
        nodes = _graph_nodes(functional)
        for node in nodes:
            if _is_functional(node.operation):
                scan(node.operation)
        # A nested model matches neither pattern below, as the layer or as its producer.
        for producer, layer, tensor in _exclusive_reads(nodes):
            if frozen_only and (_trains(layer) or _trains(producer)):
                continue
            if (isinstance(layer, keras.layers.BatchNormalization) and len(tensor.shape) >= 2
                    and _foldable(producer, layer, len(tensor.shape))):
                change_of(producer)["batch_norm"] = layer
                changes[id(layer)] = "skip"
            elif (isinstance(producer, keras.layers.ZeroPadding2D)
                  and _pads_as_same(
                      producer, layer, tuple(_producer_input_shape(tensor)))):
                change_of(layer)["padding"] = "same"
                changes[id(producer)] = "skip"

    if _is_functional(model):
        scan(model)
    return changes


def _producer_input_shape(tensor) -> tuple:
    """The shape of the (single) input of the layer call that produced ``tensor``."""
    return tuple(_producer_node(tensor).input_tensors[0].shape)


def folded_weights(producer, batch_norm) -> tuple[np.ndarray, np.ndarray]:
    """The kernel and bias of ``producer`` with ``batch_norm``'s inference map folded in.

    Args:
        producer: a built convolution or dense layer (see ``FOLDABLE_CLASS_NAMES``) or
            ``DepthwiseConv2D``.
        batch_norm: a built ``BatchNormalization`` over ``producer``'s output channels.

    Returns:
        ``(kernel, bias)`` as float32 arrays, the kernel in ``producer``'s shape.
    """
    import keras

    def values(variable):
        return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)

    variance = values(batch_norm.moving_variance)
    scale = 1.0 / np.sqrt(variance + float(batch_norm.epsilon))
    if batch_norm.scale:
        scale = scale * values(batch_norm.gamma)
    shift = values(batch_norm.beta) if batch_norm.center else 0.0
    kernel = values(producer.kernel)
    bias = values(producer.bias) if producer.use_bias else np.zeros(scale.shape)
    if isinstance(producer, keras.layers.DepthwiseConv2D):
        # Output channel c * multiplier + m comes from input channel c's m-th filter.
        kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        kernel = kernel * scale
    bias = (bias - values(batch_norm.moving_mean)) * scale + shift
    return kernel.astype(np.float32), bias.astype(np.float32)


def fold_for_inference(model, *, frozen_only: bool = False):
    """An inference copy of ``model`` with batch norms and zero paddings folded into convolutions.

    Args:
        model: a functional Keras model (nested functional models are folded too).
        frozen_only: fold only frozen layers (``trainable`` False), for a copy to train: a
            frozen batch norm runs in inference mode in training too, so the copy computes the
            same function in both modes, and every trainable layer is shared with ``model``,
            so fitting the copy trains ``model`` (save ``model``, not the copy).

    Returns:
        A new functional model computing ``model``'s inference function (the same up to float
        rounding), or ``model`` itself when ``find_folds`` finds nothing to fold (a subclassed or
        Sequential model, or no batch norm or padding in a foldable place). Changed layers are
        new, with a snapshot of the weights and the original's ``trainable``; every other layer
        is shared with ``model``.
    """
    import keras

    changes = find_folds(model, frozen_only=frozen_only)
    if not changes:
        return model
    folded_layers = []

    def clone_layer(layer):
        change = changes.get(id(layer))
        if not isinstance(change, dict):  # unchanged (shared), or skipped when called below
            return layer
        config = layer.get_config()
        if change["batch_norm"] is not None:
            config["use_bias"] = True
        if change["padding"] is not None:
            config["padding"] = change["padding"]
        folded = type(layer).from_config(config)
        folded.trainable = layer.trainable
        folded_layers.append((folded, layer, change["batch_norm"]))
        return folded

    def call_layer(layer, *arguments, **keyword_arguments):
        if changes.get(id(layer)) == "skip":
            return arguments[0]
        return layer(*arguments, **keyword_arguments)

    copy = keras.models.clone_model(model, clone_function=clone_layer, call_function=call_layer,
                                    recursive=True)
    for folded, original, batch_norm in folded_layers:
        if batch_norm is not None:
            folded.set_weights(list(folded_weights(original, batch_norm)))
        else:
            folded.set_weights(original.get_weights())
    return copy


def describe_folds(model, folded) -> str:
    """What ``folded`` (from ``fold_for_inference(model)``) folded, e.g. "52 batch norms and 4
    zero paddings"."""
    import keras

    from core.models import iter_layers

    def count(layer_class, of) -> int:
        return sum(isinstance(layer, layer_class) for layer in iter_layers(of))

    batch_norms = count(keras.layers.BatchNormalization, model) - count(
        keras.layers.BatchNormalization, folded)
    paddings = count(keras.layers.ZeroPadding2D, model) - count(keras.layers.ZeroPadding2D, folded)
    return (f"{batch_norms} batch norm{'' if batch_norms == 1 else 's'} and {paddings} zero "
            f"padding{'' if paddings == 1 else 's'}")


def _bias_moves_after(convolution, pooling) -> bool:
    """Whether ``convolution``'s bias can be added after ``pooling`` (which reads its output)."""
    import keras

    if not isinstance(pooling, keras.layers.MaxPooling2D) or pooling.data_format != "channels_last":
        return False
    if type(convolution) is not keras.layers.Conv2D or not convolution.use_bias \
            or convolution.data_format != "channels_last":
        return False
    config = convolution.get_config()
    return (config.get("activation", "linear") == "linear" and not config.get("lora_rank")
            and not getattr(convolution, "quantization_mode", None))


def bias_after_pooling(model):
    """A training copy of ``model`` that adds each pooled convolution's bias after the pooling.

    Where a ``Conv2D`` (bias, no activation of its own, channels last) is called once in the
    model's own graph and its output feeds nothing but one call of a ``MaxPooling2D``, the copy
    runs the convolution without its bias (``layers.ConvolutionWithoutBias``) and adds the bias
    after the pooling (``layers.PoolingWithBias``): the same function, since a max commutes
    with adding a per-channel constant, and the same gradients up to float rounding. It is what
    the LeNets' "pool-first" stages (conv, pool, activation) allow; a textbook stage (conv,
    activation, pool) has nothing to move.

    Args:
        model: a functional Keras model (layers inside nested models are left alone).

    Returns:
        A new functional model sharing every layer and weight with ``model`` (fit it, save
        ``model``), or ``model`` itself when no convolution qualifies (also for a Sequential or
        subclassed model).
    """
    import keras

    from core.models.layers import ConvolutionWithoutBias, PoolingWithBias

    if not _is_functional(model):
        return model
    convolution_of = {id(pooling): convolution  # id(pooling) -> the convolution it reads
                      for convolution, pooling, _ in _exclusive_reads(_graph_nodes(model))
                      if _bias_moves_after(convolution, pooling)}
    if not convolution_of:
        return model
    moved = {id(convolution) for convolution in convolution_of.values()}

    def clone_layer(layer):
        if id(layer) in moved:
            return ConvolutionWithoutBias(layer, name=f"{layer.name}_without_bias")
        if id(layer) in convolution_of:
            return PoolingWithBias(layer, convolution_of[id(layer)], name=f"{layer.name}_with_bias")
        return layer

    return keras.models.clone_model(model, clone_function=clone_layer)
