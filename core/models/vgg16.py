"""VGG16 (and MobileNetV2) transfer models: one flat functional model, base + the study's head.

The saved model keeps Keras' layer names, so ``model.get_layer("block5_conv3")`` works for
Grad-CAM. Layout, input to output::

    image (S, S, 3) uint8-valued floats
    -> augmentation            (optional keras.Sequential, active only while training)
    -> vgg16_preprocessing     (CaffePreprocessing: RGB->BGR, minus ImageNet means, no /255)
    -> block1_conv1 ... block5_pool   (Keras' VGG16 layers, each called with training=False)
    -> head_flatten -> head_dense (256, relu) -> head_dropout (0.5) -> predictions (softmax)

Feature extraction freezes every base layer; fine-tuning then unfreezes exactly block5
(``block5_conv1..3``); scratch builds the same graph with random weights, all trainable.
"""

from __future__ import annotations

import os

import keras

from core.models import backbones
from core.models.transfer_layers import CaffePreprocessing

HEAD_UNITS = 256
HEAD_DROPOUT_RATE = 0.5
MIN_IMAGE_SIZE = 32
INPUT_NAME = "image"
AUGMENTATION_NAME = "augmentation"
PREPROCESSING_NAME = {backbones.VGG16: "vgg16_preprocessing",
                      backbones.MOBILENET_V2: "mobilenetv2_preprocessing"}
HEAD_LAYER_NAMES = ("head_flatten", "head_dense", "head_dropout", "predictions")
FEATURES_LAYER_NAME = "head_flatten"  # its input is the base's output (the bottleneck features)


def build_base(backbone: str = backbones.VGG16, *, image_size: int = 224,
               weights_file: str | os.PathLike | None = None) -> keras.Model:
    """Builds a Keras Applications convolutional base (``include_top=False``).

    Args:
        backbone: ``"vgg16"`` or ``"mobilenetv2"``.
        image_size: square input size in pixels (at least 32).
        weights_file: a local ``.h5``/``.weights.h5`` file to load, or None for random weights.
            (ImageNet weights are first resolved to a file by ``backbones.ensure_imagenet_weights``.)

    Returns:
        The base model, layer names as in Keras (``block1_conv1`` ...).
    """
    backbones.check_backbone(backbone)
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an int >= {MIN_IMAGE_SIZE}, received {image_size!r}")
    weights = str(weights_file) if weights_file is not None else None
    shape = (image_size, image_size, 3)
    try:
        if backbone == backbones.VGG16:
            return keras.applications.VGG16(include_top=False, weights=weights, input_shape=shape)
        return keras.applications.MobileNetV2(include_top=False, weights=weights, input_shape=shape)
    except (ValueError, OSError, KeyError) as error:
        if weights is None:
            raise
        raise backbones.WeightsUnavailableError(
            f"{weights} is not a {backbone} no-top weights file that Keras can load: {error}"
        ) from error


def preprocessing_layer(backbone: str) -> keras.layers.Layer:
    """The in-model preprocessing each backbone was trained with (caffe mode for VGG16)."""
    if backbone == backbones.VGG16:
        return CaffePreprocessing(name=PREPROCESSING_NAME[backbone])
    if backbone == backbones.MOBILENET_V2:
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=PREPROCESSING_NAME[backbone])
    raise ValueError(f"backbone must be one of {backbones.BACKBONE_NAMES}, received {backbone!r}")


def _call_base(base: keras.Model, tensor, backbone: str):
    """Replays ``base``'s layers on ``tensor`` (flat, not nested), each with ``training=False``."""

    def call_frozen(layer, *args, **kwargs):
        kwargs["training"] = False
        return layer(*args, **kwargs)

    if backbone == backbones.VGG16:  # a plain chain of layers
        for layer in base.layers[1:]:
            tensor = call_frozen(layer, tensor)
        return tensor
    # Residual graphs (MobileNetV2): Keras' own graph walk (Keras is pinned), with our call.
    return base._run_through_graph(tensor, operation_fn=lambda operation: operation,
                                   call_fn=call_frozen)


def build_transfer_model(num_classes: int, *, backbone: str = backbones.VGG16,
                         image_size: int = 224, weights_file: str | os.PathLike | None = None,
                         augmentation: keras.layers.Layer | None = None,
                         head_units: int = HEAD_UNITS, dropout_rate: float = HEAD_DROPOUT_RATE,
                         freeze_base: bool = True, name: str | None = None) -> keras.Model:
    """Builds the study's transfer model: a backbone plus Flatten -> Dense -> Dropout -> softmax.

    Args:
        num_classes: output classes (2 for Dogs vs Cats).
        backbone: ``"vgg16"`` or ``"mobilenetv2"``.
        image_size: square input size.
        weights_file: local weights for the base, or None for random initialisation.
        augmentation: a layer (e.g. ``core.datasets.preprocess.build_augmentation(spec)``)
            inserted after the input; Keras runs it only while training.
        head_units: units of the hidden Dense layer (256 in the study).
        dropout_rate: dropout before the classifier (0.5 in the study).
        freeze_base: True for feature extraction, False for scratch training.
        name: model name (default ``"<backbone>_transfer"``).

    Returns:
        An uncompiled flat functional model taking uint8-valued floats of shape (S, S, 3).
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, received {num_classes!r}")
    if not isinstance(head_units, int) or head_units < 1:
        raise ValueError(f"head_units must be a positive int, received {head_units!r}")
    if not 0.0 <= float(dropout_rate) < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), received {dropout_rate!r}")
    base = build_base(backbone, image_size=image_size, weights_file=weights_file)
    inputs = keras.Input((image_size, image_size, 3), name=INPUT_NAME)
    tensor = inputs
    if augmentation is not None:
        tensor = augmentation(tensor)
    tensor = preprocessing_layer(backbone)(tensor)
    features = _call_base(base, tensor, backbone)
    outputs = _head(features, num_classes, head_units, dropout_rate)
    model = keras.Model(inputs, outputs, name=name or f"{backbone}_transfer")
    set_base_trainable(model, not freeze_base)
    return model


def _head(features, num_classes: int, head_units: int, dropout_rate: float):
    tensor = keras.layers.Flatten(name="head_flatten")(features)
    tensor = keras.layers.Dense(head_units, activation="relu", name="head_dense")(tensor)
    tensor = keras.layers.Dropout(dropout_rate, name="head_dropout")(tensor)
    return keras.layers.Dense(num_classes, activation="softmax", name="predictions")(tensor)


def _is_augmentation(layer) -> bool:
    return layer.name == AUGMENTATION_NAME or layer.__class__.__module__.startswith(
        "keras.src.layers.preprocessing.image_preprocessing"
    )


def base_layers(model: keras.Model) -> list:
    """The backbone's layers in ``model`` (not the input, augmentation, preprocessing or head)."""
    skip = set(HEAD_LAYER_NAMES) | set(PREPROCESSING_NAME.values())
    return [
        layer for layer in model.layers
        if layer.name not in skip and not isinstance(layer, keras.layers.InputLayer)
        and not _is_augmentation(layer) and not isinstance(layer, keras.Sequential)
    ]


def head_layers(model: keras.Model) -> list:
    """The head's layers in order: head_flatten, head_dense, head_dropout, predictions."""
    return [model.get_layer(layer_name) for layer_name in HEAD_LAYER_NAMES]


def set_base_trainable(model: keras.Model, trainable: bool) -> None:
    """Freezes (False) or unfreezes (True) every base layer; the head stays trainable."""
    for layer in base_layers(model):
        layer.trainable = trainable
    for layer in head_layers(model):
        layer.trainable = True


def unfreeze_block5(model: keras.Model) -> list[str]:
    """Fine-tuning: freezes the whole base except VGG16's last block, ``block5_conv1..3``.

    Returns:
        The names of the base layers that are now trainable (exactly the block5 convolutions).
    """
    names = set(backbones.VGG16_BLOCK5_LAYERS)
    missing = names - {layer.name for layer in model.layers}
    if missing:
        raise ValueError(f"fine-tuning needs VGG16's block5 layers; model lacks {sorted(missing)}")
    unfrozen = []
    for layer in base_layers(model):
        layer.trainable = layer.name in names
        if layer.trainable and layer.weights:
            unfrozen.append(layer.name)
    for layer in head_layers(model):
        layer.trainable = True
    return unfrozen


def feature_extractor(model: keras.Model) -> keras.Model:
    """The model from its input to the bottleneck features (the input of ``head_flatten``).

    Augmentation layers inside are inactive at inference, so ``predict`` gives clean features.
    """
    return keras.Model(model.inputs, model.get_layer(FEATURES_LAYER_NAME).input,
                       name=f"{model.name}_features")


def head_model(model: keras.Model) -> keras.Model:
    """A model from bottleneck features to predictions that shares ``model``'s head layers.

    Training it trains the full model's head (same layer objects, same variables).
    """
    feature_shape = tuple(model.get_layer(FEATURES_LAYER_NAME).input.shape[1:])
    inputs = keras.Input(feature_shape, name="features")
    tensor = inputs
    for layer in head_layers(model):
        tensor = layer(tensor)
    return keras.Model(inputs, tensor, name=f"{model.name}_head")


def copy_base_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copies weights of same-named, same-shaped base layers from ``source`` into ``target``.

    Used for ``weights="run:<id>"`` with a VGG16 run as the source.

    Returns:
        The names of the layers copied.

    Raises:
        ValueError: when no layer matches (the run is not a compatible backbone).
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
