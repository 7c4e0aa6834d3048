"""Model builders: LeNet-5 presets, VGG16 transfer models and backbones.

Importing this package is cheap (no Keras import), so pages can read presets without loading
TensorFlow. Code that loads a saved model calls ``register_custom_layers()`` first.
"""

import importlib

CUSTOM_LAYER_MODULES = ("core.models.layers", "core.models.transfer_layers", "core.models.losses",
                        "core.models.schedules")

# Keras' layer and ``core.models.layers.FusedBatchNormalization``, its subclass.
BATCH_NORM_CLASS_NAMES = ("BatchNormalization", "FusedBatchNormalization")


def register_custom_layers() -> None:
    """Imports every module that defines custom layers (losses, schedules), registering them for
    safe_mode loading."""
    for module_name in CUSTOM_LAYER_MODULES:
        importlib.import_module(module_name)


def set_batch_norm_momentum(model, momentum: float) -> None:
    """Sets the moving-average ``momentum`` of every BatchNormalization layer in ``model.layers``
    (matched by class name, so this module needs no Keras import)."""
    for layer in model.layers:
        if type(layer).__name__ in BATCH_NORM_CLASS_NAMES:
            layer.momentum = float(momentum)


def iter_layers(model):
    """Yields every layer of ``model`` depth-first, nested models' layers included (in order)."""
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
