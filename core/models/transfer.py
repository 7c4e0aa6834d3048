"""The transfer model around any backbone: one flat functional model, base + a new head.

Layout, input to output::

    image (S, S, 3) uint8-valued floats
    -> augmentation              (optional keras.Sequential, active only while training)
    -> <backbone>_preprocessing  (each backbone's own: caffe mode for VGG16, x/127.5-1 for MobileNets)
    -> the backbone's layers     (Keras' names, each called with training=False)
    -> the head

Two heads:

* ``"flatten"`` (the study): head_flatten -> head_dense (256, relu) -> head_dropout (0.5) ->
  predictions;
* ``"pooling"``: head_pooling (global average) -> head_dense -> head_dropout -> predictions,
  the usual head for MobileNets (fewer weights to fit from 2,000 images).

A pretrained base is called with ``training=False``, so BatchNorm stays in inference mode even
when fine-tuning unfreezes it (as the Keras transfer-learning guide advises); a scratch base
trains its BatchNorm statistics normally, with ``SCRATCH_BATCH_NORM_MOMENTUM`` (Keras' MobileNets
use 0.999, which after a short run leaves the moving statistics mostly at their initial values:
a from-scratch MobileNetV2 with 300 steps reached 71 % training accuracy but answered one class
for every validation image). Feature
extraction freezes every base layer; fine-tuning then unfreezes the backbone's last
``num_blocks`` blocks (``unfreeze_top_blocks``); scratch trains everything from random weights.
"""

from __future__ import annotations

import os

import keras

from core.models import backbones, set_batch_norm_momentum

HEAD_UNITS = 256
HEAD_DROPOUT_RATE = 0.5
MIN_IMAGE_SIZE = 32
INPUT_NAME = "image"
AUGMENTATION_NAME = "augmentation"
FLATTEN_HEAD = "flatten"
POOLING_HEAD = "pooling"
HEAD_KINDS = (FLATTEN_HEAD, POOLING_HEAD)
HEAD_INPUT_NAMES = {FLATTEN_HEAD: "head_flatten", POOLING_HEAD: "head_pooling"}
HEAD_LAYER_NAMES = ("head_dense", "head_dropout", "predictions")
# Moving-average momentum of a scratch base's BatchNorm layers: after n steps the initial
# statistics weigh momentum ** n (0.9 ** 300 ~ 2e-14; Keras' MobileNet 0.999 ** 300 = 0.74).
SCRATCH_BATCH_NORM_MOMENTUM = 0.9


def build_base(backbone: str = backbones.VGG16, *, image_size: int = 224,
               weights_file: str | os.PathLike | None = None, alpha: float | None = None) -> keras.Model:
    """Builds a backbone's convolutional base (``include_top=False``).

    Args:
        backbone: one of ``backbones.BACKBONE_NAMES``.
        image_size: square input size in pixels (at least 32).
        weights_file: a local ``.h5``/``.weights.h5`` file, or None for random weights.
        alpha: width multiplier for the MobileNets (None: the backbone's default).

    Returns:
        The base model, layer names as in Keras.

    Raises:
        ValueError: bad size; ``core.weights.WeightsUnavailableError`` when the file does not fit.
    """
    module = backbones.backbone_module(backbone)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an int >= {MIN_IMAGE_SIZE}, received {image_size!r}")
    kwargs = {} if alpha is None else {"alpha": alpha}
    try:
        return module.build_base(image_size, weights_file, **kwargs)
    except (ValueError, OSError, KeyError) as error:
        if weights_file is None:
            raise
        from core.weights import WeightsUnavailableError

        raise WeightsUnavailableError(
            f"{weights_file} is not a {backbone} no-top weights file that Keras can load: {error}"
        ) from error


def _call_base(base: keras.Model, tensor, inference_mode: bool = True):
    """Replays ``base``'s layers on ``tensor`` (flat, not nested).

    With ``inference_mode`` each layer is called with ``training=False`` (BatchNorm keeps its
    pretrained statistics, also when fine-tuning); without it (scratch), BatchNorm learns its
    statistics as usual, and each of Keras' ``BatchNormalization`` layers is replaced by a
    ``FusedBatchNormalization`` with the same config and weights: the same function, trained
    with one fused kernel per layer on TensorFlow (a scratch MobileNetV2, alpha 0.35, 96 px,
    batch 64, trained its steady epochs in 4.7-5.1 s against 6.7-7.7 s with Keras' layer, round
    36, an ad-hoc paired run).
    """
    from core.models.layers import FusedBatchNormalization, rebuilt_as

    def call_frozen(layer, *args, **kwargs):
        if inference_mode:
            kwargs["training"] = False
        return layer(*args, **kwargs)

    def operation(layer):
        if inference_mode or type(layer) is not keras.layers.BatchNormalization:
            return layer
        return rebuilt_as(layer, FusedBatchNormalization, layer.input.shape, layer.get_weights())

    # Keras' own graph walk (Keras is pinned), with our call: works for chains and residual graphs.
    return base._run_through_graph(tensor, operation_fn=operation, call_fn=call_frozen)


def build_transfer_model(num_classes: int, *, backbone: str = backbones.VGG16,
                         image_size: int = 224, weights_file: str | os.PathLike | None = None,
                         alpha: float | None = None, augmentation: keras.layers.Layer | None = None,
                         head: str = FLATTEN_HEAD, head_units: int = HEAD_UNITS,
                         dropout_rate: float = HEAD_DROPOUT_RATE, freeze_base: bool = True,
                         name: str | None = None) -> keras.Model:
    """Builds a transfer model: a backbone, its preprocessing, and a new head.

    Args:
        num_classes: output classes (2 for Dogs vs Cats).
        backbone: one of ``backbones.BACKBONE_NAMES``.
        image_size: square input size.
        weights_file: local weights for the base, or None for random initialisation.
        alpha: MobileNet width multiplier (None: the backbone's default).
        augmentation: a layer inserted after the input; Keras runs it only while training.
        head: ``"flatten"`` (the study's) or ``"pooling"`` (global average pooling first).
        head_units: units of the hidden Dense layer (256 in the study); 0 for none (pooling
            head only: a linear classifier on the pooled features).
        dropout_rate: dropout before the classifier (0.5 in the study).
        freeze_base: True for feature extraction, False for scratch training (with no
            ``weights_file``, the base's BatchNorm momentum becomes
            ``SCRATCH_BATCH_NORM_MOMENTUM``).
        name: model name (default ``"<backbone>_transfer"``).

    Returns:
        An uncompiled flat functional model taking uint8-valued floats of shape (S, S, 3).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, received {num_classes!r}")
    if head not in HEAD_KINDS:
        raise ValueError(f"head must be one of {HEAD_KINDS}, received {head!r}")
    minimum_units = 0 if head == POOLING_HEAD else 1
    if isinstance(head_units, bool) or not isinstance(head_units, int) or head_units < minimum_units:
        raise ValueError(f"head_units must be an int >= {minimum_units} for the {head} head, "
                         f"received {head_units!r}")
    if not 0.0 <= float(dropout_rate) < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), received {dropout_rate!r}")
    module = backbones.backbone_module(backbone)
    base = build_base(backbone, image_size=image_size, weights_file=weights_file, alpha=alpha)
    inputs = keras.Input((image_size, image_size, 3), name=INPUT_NAME)
    tensor = inputs
    if augmentation is not None:
        tensor = augmentation(tensor)
    tensor = module.preprocessing_layer()(tensor)
    if weights_file is None and not freeze_base:
        set_batch_norm_momentum(base, SCRATCH_BATCH_NORM_MOMENTUM)
    features = _call_base(base, tensor, inference_mode=freeze_base)
    outputs = _head(features, num_classes, head, head_units, dropout_rate)
    model = keras.Model(inputs, outputs, name=name or f"{backbone}_transfer")
    set_base_trainable(model, not freeze_base)
    return model


def _head(features, num_classes: int, head: str, head_units: int, dropout_rate: float):
    if head == FLATTEN_HEAD:
        tensor = keras.layers.Flatten(name=HEAD_INPUT_NAMES[FLATTEN_HEAD])(features)
    else:
        tensor = keras.layers.GlobalAveragePooling2D(name=HEAD_INPUT_NAMES[POOLING_HEAD])(features)
    if head_units:
        tensor = keras.layers.Dense(head_units, activation="relu", name="head_dense")(tensor)
    tensor = keras.layers.Dropout(dropout_rate, name="head_dropout")(tensor)
    return keras.layers.Dense(num_classes, activation="softmax", name="predictions")(tensor)


def _is_augmentation(layer) -> bool:
    return layer.name == AUGMENTATION_NAME or layer.__class__.__module__.startswith(
        "keras.src.layers.preprocessing.image_preprocessing"
    )


def _head_input_layer(model: keras.Model):
    for name in HEAD_INPUT_NAMES.values():
        if any(layer.name == name for layer in model.layers):
            return model.get_layer(name)
    raise ValueError(f"model {model.name!r} has no transfer head (no layer named "
                     f"{' or '.join(HEAD_INPUT_NAMES.values())})")


def head_layers(model: keras.Model) -> list:
    """The head's layers in order, from the flatten/pooling layer to ``predictions``."""
    names = {layer.name for layer in model.layers}
    return [_head_input_layer(model)] + [model.get_layer(name) for name in HEAD_LAYER_NAMES
                                         if name in names]


def base_layers(model: keras.Model) -> list:
    """The backbone's layers in ``model`` (not the input, augmentation, preprocessing or head)."""
    skip = {layer.name for layer in head_layers(model)}
    preprocessing = {backbones.backbone_module(name).PREPROCESSING_NAME for name in backbones.BACKBONE_NAMES}
    return [
        layer for layer in model.layers
        if layer.name not in skip and layer.name not in preprocessing
        and not isinstance(layer, keras.layers.InputLayer)
        and not _is_augmentation(layer) and not isinstance(layer, keras.Sequential)
    ]


def set_base_trainable(model: keras.Model, trainable: bool) -> None:
    """Freezes (False) or unfreezes (True) every base layer; the head stays trainable."""
    for layer in base_layers(model):
        layer.trainable = trainable
    for layer in head_layers(model):
        layer.trainable = True


def top_block_layers(model: keras.Model, backbone: str, num_blocks: int) -> list[str]:
    """Names of the base layers in the backbone's last ``num_blocks`` blocks.

    Args:
        model: a transfer model of ``backbone``.
        backbone: its backbone name.
        num_blocks: how many blocks, counted from the top (1 = only the last).

    Raises:
        ValueError: for a block count outside 1..the backbone's blocks, or a model lacking them.
    """
    module = backbones.backbone_module(backbone)
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or not 1 <= num_blocks <= module.NUM_BLOCKS:
        raise ValueError(f"fine_tune_blocks must be an int in 1..{module.NUM_BLOCKS} for {backbone}, "
                         f"received {num_blocks!r}")
    first = module.NUM_BLOCKS - num_blocks + 1
    names = [layer.name for layer in base_layers(model)
             if (module.block_index(layer.name) or -1) >= first]
    if not names:
        raise ValueError(f"model {model.name!r} has no {backbone} block >= {first}")
    return names


def unfreeze_top_blocks(model: keras.Model, backbone: str, num_blocks: int) -> list[str]:
    """Fine-tuning: freezes the whole base except its last ``num_blocks`` blocks.

    VGG16 with ``num_blocks=1`` unfreezes exactly ``block5_conv1..3`` (the study). BatchNorm
    layers inside the unfrozen blocks learn their scale/offset but stay in inference mode.

    Returns:
        The names of the base layers with weights that are now trainable.
    """
    chosen = set(top_block_layers(model, backbone, num_blocks))
    unfrozen = []
    for layer in base_layers(model):
        layer.trainable = layer.name in chosen
        if layer.trainable and layer.weights:
            unfrozen.append(layer.name)
    for layer in head_layers(model):
        layer.trainable = True
    return unfrozen


def pools_features(model: keras.Model) -> bool:
    """Whether ``model``'s head starts with global average pooling (``head="pooling"``).

    Pooling has no weights, so such a head can train on pooled bottleneck features (one vector
    per image) instead of the base's feature maps, with the same result.
    """
    return _head_input_layer(model).name == HEAD_INPUT_NAMES[POOLING_HEAD]


def _check_pooled(model: keras.Model, pooled: bool) -> None:
    if pooled and not pools_features(model):
        raise ValueError(f"pooled=True needs a model whose head starts with global pooling "
                         f"({HEAD_INPUT_NAMES[POOLING_HEAD]!r}); model {model.name!r} starts its "
                         f"head with {_head_input_layer(model).name!r}")


def feature_extractor(model: keras.Model, *, pooled: bool = False) -> keras.Model:
    """The model from its input to the bottleneck features (the input of the head).

    Augmentation layers inside are inactive at inference, so ``predict`` gives clean features.

    Args:
        model: a transfer model from ``build_transfer_model``.
        pooled: end after the head's global pooling layer (one vector per image) instead of at
            the base's feature maps; only for a pooling head (``pools_features``).

    Returns:
        A model sharing ``model``'s layers.
    """
    _check_pooled(model, pooled)
    layer = _head_input_layer(model)
    return keras.Model(model.inputs, layer.output if pooled else layer.input,
                       name=f"{model.name}_{'pooled_' if pooled else ''}features")


def head_model(model: keras.Model, *, pooled: bool = False) -> keras.Model:
    """A model from bottleneck features to predictions that shares ``model``'s head layers.

    Training it trains the full model's head (same layer objects, same variables).

    Args:
        model: a transfer model from ``build_transfer_model``.
        pooled: take pooled features (what ``feature_extractor(model, pooled=True)`` gives) and
            skip the head's pooling layer; only for a pooling head.

    Returns:
        The head as its own model.
    """
    _check_pooled(model, pooled)
    layers = head_layers(model)
    first = layers.pop(0) if pooled else layers[0]
    feature_shape = tuple((first.output if pooled else first.input).shape[1:])
    inputs = keras.Input(feature_shape, name="features")
    tensor = inputs
    for layer in layers:
        tensor = layer(tensor)
    return keras.Model(inputs, tensor, name=f"{model.name}_head")


def copy_base_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copies weights of same-named, same-shaped base layers from ``source`` into ``target``.

    Used for ``weights="run:<id>"`` with a run of the same backbone as the source.

    Returns:
        The names of the layers copied.

    Raises:
        ValueError: when no layer matches, or a layer's shapes differ.
    """
    source_layers = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in base_layers(target):
        other = source_layers.get(layer.name)
        if other is None or not layer.weights:
            continue
        values = other.get_weights()
        if [value.shape for value in values] != [tuple(w.shape) for w in layer.weights]:
            raise ValueError(
                f"layer {layer.name} of the source run has shapes "
                f"{[value.shape for value in values]}, expected {[tuple(w.shape) for w in layer.weights]}"
            )
        layer.set_weights(values)
        copied.append(layer.name)
    if not copied:
        raise ValueError(f"the source model {source.name!r} has none of the backbone's layers")
    return copied


def count_params(model: keras.Model) -> tuple[int, int]:
    """Returns (trainable, non-trainable) parameter counts."""
    trainable = sum(int(keras.ops.size(weight)) for weight in model.trainable_weights)
    frozen = sum(int(keras.ops.size(weight)) for weight in model.non_trainable_weights)
    return trainable, frozen
