"""What the two transfer families share: strategies, checks, data loading, optimisers, phases.

``core.training.backbone_family`` (VGG16 / MobileNetV2 / MobileNet) and
``core.training.lenet_transfer_family`` (few-shot LeNet) both import from here; nothing here
imports a family.
"""

from __future__ import annotations

import numpy as np

FEATURE_EXTRACTION = "feature-extraction"
FINE_TUNE = "fine-tune"
SCRATCH = "scratch"
STRATEGIES = (FEATURE_EXTRACTION, FINE_TUNE, SCRATCH)
TRANSFER_STRATEGIES = (FEATURE_EXTRACTION, FINE_TUNE)
OPTIMIZERS = ("sgd", "adam")
AUGMENTATION_KEYS = ("rotation_degrees", "shift", "zoom", "brightness", "contrast")


def check_classes(config: dict) -> None:
    """Checks ``config["classes"]`` is None or a non-empty list of class ids."""
    classes = config.get("classes")
    if classes is None:
        return
    if isinstance(classes, (int, np.integer)) or not isinstance(classes, (list, tuple)) or not classes or any(
        isinstance(item, bool) or not isinstance(item, (int, np.integer)) or item < 0 for item in classes
    ):
        raise ValueError(f"classes must be null or a non-empty list of class ids, received {classes!r}")
    config["classes"] = [int(item) for item in classes]


def check_dataset(config: dict) -> None:
    """Checks ``config["dataset"]`` names a dataset the registry knows (built-in or created)."""
    from core.datasets import base

    try:
        base.check_name(config.get("dataset"))
    except base.DatasetError as error:
        raise ValueError(str(error)) from None


def augmentation_enabled(spec: dict | None) -> bool:
    """True when an augmentation spec changes images at all."""
    if not spec:
        return False
    return any(float(spec.get(key) or 0) > 0 for key in AUGMENTATION_KEYS) or (
        spec.get("flip") not in (None, "none", False))


def load_and_seed(context):
    """Loads the run's splits, records its class names and seeds Keras.

    Returns:
        ``(train_split, val_split, test_split_or_None, class_names)``.
    """
    import keras

    from core.training.trainer import load_prepared_splits

    config, logger = context.config, context.logger
    train_split, val_split, test_split = load_prepared_splits(config, logger)
    logger.info("Images: %d train, %d val, %s test", len(train_split), len(val_split),
                len(test_split) if test_split is not None else "no")
    context.raise_if_cancelled()
    class_names = train_split.class_names
    context.set_class_names(class_names)
    keras.utils.set_random_seed(config["seed"])
    return train_split, val_split, test_split, class_names


def make_optimizer(name: str, learning_rate: float, momentum: float = 0.9):
    """SGD with momentum (the study) or Adam."""
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, received {name!r}")


def compile_classifier(model, optimizer) -> None:
    """Compiles for integer labels with accuracy, as every family's models are, and creates the
    optimizer's variables now, for the layers that are trainable now.

    Keras would otherwise create them while tracing the first training step, as initialisers
    lifted out of the graph. For a MobileNetV2 trained from scratch (alpha 0.35 at 32 px, Adam,
    2 cores) the first ``fit`` of 10 steps took 36-37 s that way and 22-25 s this way; a fit of
    2 x 2 steps, 29-30 s and 24-28 s. The weights it trains are the same to the last bit.
    Call it where ``model.compile`` would be called: inside the distribution strategy's scope,
    after setting which layers train.

    Args:
        model: a built Keras model.
        optimizer: a Keras optimizer that has not been used yet.
    """
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.optimizer.build(model.trainable_variables)


def set_phase(context, text: str, **fields) -> None:
    """Shows what the run is doing between epochs (``status.json`` ``phase``) and logs it."""
    from core import runs

    runs.update_status(context.run_dir, phase=text, **fields)
    context.logger.info(text)
