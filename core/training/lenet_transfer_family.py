"""The few-shot LeNet transfer family (``lenet5-transfer``): Yosinski et al. 2014 in small.

A LeNet-sized network, either trained on a source task, or built from a finished ``source_run``
whose first ``transfer_layers`` weighted layers are copied (``feature-extraction``: frozen, the
paper's AnB; ``fine-tune``: trainable, AnB+) while the rest, and a new classifier, start random.
``scratch`` with a ``source_run`` uses the source's architecture with random weights (the
control). Keys: the LeNet keys of ``core.models.lenet`` (``preset`` default ``plus``; ignored when
a ``source_run`` fixes the architecture; never a spatial transformer, whose conv and dense layers
would shift the ``transfer_layers`` count, so it is off even though the plus preset has one), plus ``classes``, ``labels_per_class``,
``source_run``, ``transfer_layers`` (n, counted over conv and dense layers in graph order;
None = every convolution: the source's feature extractor, with a freshly initialised head),
``head_epochs`` (fine-tune: the first third of the epochs train only the new layers with the
copied ones frozen, then everything trains at ``fine_tune_learning_rate_factor`` (0.3) times the
preset's learning rate; the same epochs as scratch in total), ``batch_norm_momentum`` (0.9 instead of Keras' 0.99: a few-shot run takes only a few
hundred steps, and with 0.99 the moving statistics are still mostly their initial values, so
inference would be near chance), ``experiment`` / ``role`` (labels for the pages).

A source run that is still queued or running is waited for by the job queue (the experiment
submits its targets with ``depends_on``), so training here only checks the source completed.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np

from core.training import transfer_support as support
from core.training.config_checks import check_choice, check_int, check_number

MODEL_NAME = "lenet5-transfer"
LENET_TRANSFER_DEFAULTS = {
    "strategy": support.SCRATCH,
    "preset": "plus",
    "dataset": "gtsrb",
    "classes": None,
    "labels_per_class": None,
    "source_run": None,
    "transfer_layers": None,
    "fine_tune_learning_rate_factor": 0.3,
    "head_epochs": None,
    "batch_norm_momentum": 0.9,
    "train_size": None,
    "valid_size": None,
    "experiment": None,
    "experiment_id": None,
    "role": None,
    "source": None,
}
LENET_EXTRA_KEYS = tuple(LENET_TRANSFER_DEFAULTS) + ("model", "sweep_id")
WEIGHTED_LAYER_TYPES = ("Conv2D", "Dense", "DepthwiseConv2D", "SeparableConv2D")
CONV_LAYER_TYPES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")


def resolve_config(config: dict, runs_root=None) -> dict:
    """Fills every default and validates a ``lenet5-transfer`` config.

    Args:
        config: a ``lenet5-transfer`` config (see the module docstring).
        runs_root: the runs root holding ``source_run`` (default ``core.paths.runs_dir()``).

    Returns:
        The complete config stored in ``config.json``.

    Raises:
        ValueError: for an unknown setting, a missing source for a transfer strategy, or a
            value out of range.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, received {type(config).__name__}")
    if config.get("model", MODEL_NAME) != MODEL_NAME:
        raise ValueError(f"this family trains {MODEL_NAME!r}, received model {config.get('model')!r}")
    return _resolve(config, runs_root)


def _resolve(config: dict, runs_root) -> dict:
    from core.datasets import preprocess
    from core.training import lenet_family

    extra = copy.deepcopy(LENET_TRANSFER_DEFAULTS)
    extra.update({key: value for key, value in config.items()
                  if key in LENET_TRANSFER_DEFAULTS and value is not None})
    # The architecture and optimiser keys are LeNet's: its family fills and checks them.
    lenet_part = {key: value for key, value in config.items()
                  if key not in LENET_EXTRA_KEYS and value is not None}
    unknown = sorted(set(lenet_part) - set(lenet_family.ALLOWED_KEYS))
    if unknown:
        raise ValueError(f"unknown {MODEL_NAME} setting(s) {unknown}; expected LeNet "
                         f"settings or some of {sorted(LENET_TRANSFER_DEFAULTS)}")
    if lenet_part.get("spatial_transformer"):
        raise ValueError(f"{MODEL_NAME} networks have no spatial transformer (transfer_layers counts "
                         "their conv and dense layers in order); received spatial_transformer=true")
    lenet_part["preset"] = extra.pop("preset")
    lenet_part["spatial_transformer"] = False  # also when the preset (plus) has one
    lenet_part["dataset"] = extra["dataset"]
    resolved = lenet_family.resolve_config({**lenet_part, "model": lenet_family.MODEL_NAME})
    resolved.update(extra)
    resolved["model"] = MODEL_NAME
    for key in ("labels_per_class", "train_size", "valid_size"):
        check_int(resolved, key, optional=True)
    resolved["sweep_id"] = config.get("sweep_id")
    check_choice(resolved, "strategy", support.STRATEGIES)
    support.check_classes(resolved)
    check_int(resolved, "transfer_layers", optional=True)
    check_number(resolved, "fine_tune_learning_rate_factor", 1e-4, 10.0)
    check_number(resolved, "batch_norm_momentum", 0.0, 0.999)
    if resolved["strategy"] == support.FINE_TUNE:
        if resolved["head_epochs"] is None:
            resolved["head_epochs"] = resolved["epochs"] // 3
        check_int(resolved, "head_epochs", minimum=0)
        if resolved["head_epochs"] >= resolved["epochs"]:
            raise ValueError(f"head_epochs must be below epochs ({resolved['epochs']}), "
                             f"received {resolved['head_epochs']}")
    else:
        resolved["head_epochs"] = None
    if resolved["strategy"] in support.TRANSFER_STRATEGIES and not resolved["source_run"]:
        raise ValueError(f"strategy {resolved['strategy']!r} needs a source_run (a finished run "
                         "whose layers are copied); received none")
    if resolved["source_run"]:
        from core import runs

        source_dir = runs.run_path(resolved["source_run"], runs_root)
        resolved["source_run"] = str(source_dir)
        source_config = runs.read_config(source_dir)
        if source_config.get("spatial_transformer"):
            raise ValueError(f"source run {source_dir.name} has a spatial transformer, whose layers "
                             f"would be counted as transfer layers; expected a run without one")
        if source_config.get("preprocessing"):
            # The copied filters expect the source's input: reuse its preprocessing exactly.
            resolved["preprocessing"] = preprocess.resolve_preprocessing(source_config["preprocessing"])
        resolved["source_dataset"] = source_config.get("dataset")
        resolved["source_classes"] = source_config.get("classes")
    resolved["weights"] = f"run:{Path(resolved['source_run']).name}" if (
        resolved["source_run"] and resolved["strategy"] != support.SCRATCH) else "none"
    return resolved


def weighted_layers(model) -> list:
    """Conv/Dense layers in graph order (what Yosinski et al. count as "layers")."""
    return [layer for layer in model.layers if type(layer).__name__ in WEIGHTED_LAYER_TYPES]


def build_lenet_transfer_model(config: dict, num_classes: int, input_shape, source_model=None):
    """Builds the few-shot model: the source's architecture (or a LeNet preset) + new classifier.

    Args:
        config: a resolved ``lenet5-transfer`` config.
        num_classes: classes of the target task.
        input_shape: (S, S, C) of the preprocessed images.
        source_model: the loaded source ``model.keras`` or None (then a LeNet from the preset).

    Returns:
        ``(model, copied_layer_names)``: an uncompiled model whose first ``transfer_layers``
        weighted layers (default: every convolution) hold the source's weights (frozen for
        feature-extraction), the rest freshly initialised; nothing copied for scratch.
    """
    import keras

    from core.datasets import preprocess
    from core.models import lenet

    if source_model is None:
        augmentation = preprocess.build_augmentation(config["augmentation"])
        model = lenet.build_from_config(config, num_classes, input_shape, augmentation)
        _set_batch_norm_momentum(model, config["batch_norm_momentum"])
        return model, []
    clone = keras.models.clone_model(source_model)  # same graph, fresh random weights
    classifier = clone.layers[-1]
    if type(classifier).__name__ != "Dense":
        raise ValueError(f"the source model must end in a Dense classifier, its last layer is "
                         f"{classifier.name!r} ({type(classifier).__name__})")
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=classifier.name)(classifier.input)
    model = keras.Model(clone.inputs, outputs, name=f"{source_model.name}_transfer")
    _set_batch_norm_momentum(model, config["batch_norm_momentum"])
    copied: list[str] = []
    if config["strategy"] == support.SCRATCH:
        return model, copied
    source_layers = {layer.name: layer for layer in source_model.layers}
    transferable = weighted_layers(model)[:-1]  # never the new classifier
    convolutions = [layer for layer in transferable if type(layer).__name__ in CONV_LAYER_TYPES]
    count = len(convolutions) if config["transfer_layers"] is None else config["transfer_layers"]
    if count > len(transferable):
        raise ValueError(f"transfer_layers must be at most {len(transferable)} for this source, "
                         f"received {count}")
    chosen = {layer.name for layer in transferable[:count]}
    freeze = config["strategy"] == support.FEATURE_EXTRACTION
    copying = False
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in WEIGHTED_LAYER_TYPES:
            copying = layer.name in chosen
        if not layer.weights or layer is model.layers[-1]:
            continue
        if copying and layer.name in source_layers:
            # Conv/Dense layers and the batch norm right after them travel together.
            layer.set_weights(source_layers[layer.name].get_weights())
            layer.trainable = not freeze
            copied.append(layer.name)
    return model, copied


def _set_batch_norm_momentum(model, momentum: float) -> None:
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.momentum = float(momentum)


def _check_source_completed(source_dir: Path) -> None:
    """The queue started this run only after its source completed; check it still holds."""
    from core import runs

    state = runs.read_status(source_dir).get("state")
    if state != runs.COMPLETED:
        raise ValueError(f"source run {source_dir.name} is {state}, not completed; it cannot be a "
                         "source (submit with depends_on to wait for it)")


def _train_lenet_transfer(context) -> None:
    import keras

    from core import runs
    from core.models import lenet

    config = context.config
    logger = context.logger
    source_model = None
    if config["source_run"]:
        source_dir = Path(config["source_run"])
        _check_source_completed(source_dir)
        from core.models import register_custom_layers

        register_custom_layers()
        source_model = keras.saving.load_model(source_dir / runs.MODEL_FILE, compile=False,
                                               safe_mode=True)
    per_class = config["labels_per_class"]
    support.set_phase(context, f"Loading {config['dataset']}"
                        + (f" ({per_class} labels per class)" if per_class else ""))
    train_split, val_split, test_split, class_names = support.load_and_seed(context)
    batch_size = config["batch_size"]
    steps_per_epoch = max(1, math.ceil(len(train_split) / batch_size))
    epochs = config["epochs"]
    strategy = config["strategy"]
    with context.scope():
        model, copied = build_lenet_transfer_model(config, len(class_names),
                                                   tuple(train_split.images.shape[1:]), source_model)
    copied_layers = [model.get_layer(name) for name in copied]
    head_epochs = config["head_epochs"] if strategy == support.FINE_TUNE else 0
    stages = []  # (epochs, copied layers trainable?, learning rate)
    if strategy == support.FINE_TUNE:
        if head_epochs:
            stages.append((head_epochs, False, config["learning_rate"]))
        stages.append((epochs - head_epochs, True,
                       config["learning_rate"] * config["fine_tune_learning_rate_factor"]))
    else:
        stages.append((epochs, strategy == support.SCRATCH, config["learning_rate"]))
    validation = (val_split.images, val_split.labels)
    for stage_epochs, copied_trainable, learning_rate in stages:
        for layer in copied_layers:
            layer.trainable = copied_trainable
        with context.scope():
            model.compile(optimizer=lenet.make_optimizer(
                {**config, "learning_rate": learning_rate, "epochs": stage_epochs}, steps_per_epoch),
                loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
        frozen = sum(int(np.prod(weight.shape)) for weight in model.non_trainable_weights)
        support.set_phase(context, f"{strategy}: {len(copied)} copied layers "
                            f"{'trainable' if copied_trainable else 'frozen'} for {stage_epochs} epochs, "
                            f"{trainable:,} trainable / {frozen:,} frozen parameters, "
                            f"learning rate {learning_rate:g}")
        model.fit(train_split.images, train_split.labels, batch_size=batch_size, epochs=stage_epochs,
                  shuffle=True, verbose=0, validation_data=validation,
                  callbacks=context.callbacks(epochs, epoch_offset=context.epochs_done()))
        if context.cancelled:
            return
    optimizer_config = {"learning_rate": stages[-1][2]}
    if context.cancelled:
        return
    extra = {"strategy": config["strategy"], "copied_layers": copied,
             "source_run": Path(config["source_run"]).name if config["source_run"] else None,
             "learning_rate_used": optimizer_config["learning_rate"]}
    context.write_results(context.load_best_model(), test_split, val_split,
                          num_train_images=len(train_split), class_names=class_names, extra=extra)
    support.set_phase(context, "Done")


def train(context) -> None:
    """Trains one few-shot run (see the module docstring); ``context`` is a ``RunContext``."""
    _train_lenet_transfer(context)
