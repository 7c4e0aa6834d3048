"""The few-shot LeNet transfer family (``lenet5-transfer``): Yosinski et al. 2014 in small.

A LeNet-sized network, either trained on a source task, or built from a finished ``source_run``
whose first ``transfer_layers`` weighted layers are copied (``feature-extraction``: frozen, the
paper's AnB; ``fine-tune``: trainable, AnB+) while the rest, and a new classifier, start random.
``scratch`` with a ``source_run`` uses the source's architecture with random weights (the
control). Keys: the LeNet keys of ``core.models.lenet`` (``preset`` default ``plus``; ignored when
a ``source_run`` fixes the architecture; never a spatial transformer, whose conv and dense layers
would shift the ``transfer_layers`` count, so it is off even though the plus preset has one;
``label_smoothing``, ``weight_decay`` 0 and grayscale input unless set, as the few-shot figures
were measured, although the plus preset has 0.1, 0.05 and colour), plus ``classes``,
``labels_per_class``, ``source_run``, ``transfer_layers`` (n, counted over conv and dense layers in graph order;
None = every convolution: the source's feature extractor, with a freshly initialised head),
``head_epochs`` (fine-tune: the first third of the epochs train only the new layers with the
copied ones frozen, then everything trains at ``fine_tune_learning_rate_factor`` (0.3) times the
preset's learning rate; the same epochs as scratch in total), ``batch_norm_momentum`` (0.9 instead of Keras' 0.99: a few-shot run takes only a few
hundred steps, and with 0.99 the moving statistics are still mostly their initial values, so
inference would be near chance), ``experiment`` / ``role`` (labels for the pages).

``self-training`` (this family only) is unsupervised domain adaptation, with no target label:
the network starts as a copy of the whole ``source_run`` (classifier included, so the classes
must be the source's), and ``unlabelled_dataset`` supplies images whose labels are never read.
(1) Its batch-norm statistics are re-estimated on those images (AdaBN: Li et al. 2016,
"Revisiting Batch Normalization for Practical Domain Adaptation"); (2) it labels them itself and
keeps those labelled with at least ``pseudo_label_threshold`` confidence, by ``pseudo_labels``
(``core.training.pseudo_labels``: "centroids", the default, takes each image's nearest class
centroid in the network's feature space; "classifier" its most probable class); (3) it trains
on the run's labelled ``dataset`` plus those pseudo-labelled images, at
``fine_tune_learning_rate_factor`` times the preset's learning rate, picking its best epoch on
the labelled dataset's validation split; (4) batch-norm statistics are re-estimated on the
unlabelled images once more. The synthetic → real experiment uses it with drawn signs as
``dataset`` and GTSRB as ``unlabelled_dataset``: 0 real labels.

A source run that is still queued or running is waited for by the job queue (the experiment
submits its targets with ``depends_on``), so training here only checks the source completed.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np

from core.models import set_batch_norm_momentum
from core.training import transfer_support as support
from core.training.config_checks import check_choice, check_int, check_number
from core.training.pseudo_labels import (DEFAULT_PSEUDO_LABEL_METHOD, FEATURES_LAYER,
                                         PSEUDO_LABEL_METHODS, select_pseudo_labels)

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
    "unlabelled_dataset": None,
    "pseudo_label_threshold": 0.9,
    "pseudo_labels": DEFAULT_PSEUDO_LABEL_METHOD,
}
LENET_EXTRA_KEYS = tuple(LENET_TRANSFER_DEFAULTS) + ("model", "sweep_id")
WEIGHTED_LAYER_TYPES = ("Conv2D", "Dense", "DepthwiseConv2D", "SeparableConv2D")
CONV_LAYER_TYPES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
SELF_TRAINING = "self-training"
STRATEGIES = support.STRATEGIES + (SELF_TRAINING,)
NEEDS_SOURCE = support.TRANSFER_STRATEGIES + (SELF_TRAINING,)
STATISTICS_BATCH_SIZE = 512


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
    if lenet_part.get("time_budget_seconds"):
        raise ValueError(f"{MODEL_NAME} runs have no time budget (their stages and few-shot arms "
                         "train for set epochs); received time_budget_seconds="
                         f"{lenet_part['time_budget_seconds']!r}")
    if (lenet_part.get("batch_branches") or 1) != 1:
        raise ValueError(f"{MODEL_NAME} runs train in one pass per batch (their stages swap "
                         "models and freeze layers); received batch_branches="
                         f"{lenet_part['batch_branches']!r}")
    lenet_part["batch_branches"] = 1  # also when the preset (seed) has more
    lenet_part["preset"] = extra.pop("preset")
    if lenet_part.get("spatial_transformer_size"):
        raise ValueError(f"{MODEL_NAME} networks have no spatial transformer, so no "
                         "spatial_transformer_size; received spatial_transformer_size="
                         f"{lenet_part['spatial_transformer_size']!r}")
    lenet_part["spatial_transformer"] = False  # also when the preset (plus) has one
    lenet_part["spatial_transformer_size"] = 0  # likewise
    # The few-shot and self-training figures were measured without label smoothing and weight
    # decay, which the plus preset took later (rounds 31 and 37): 0 unless a config asks for them.
    lenet_part.setdefault("label_smoothing", 0.0)
    lenet_part.setdefault("weight_decay", 0.0)
    # Likewise grayscale input, which the plus preset left for colour in round 38.
    lenet_part["preprocessing"] = {"color": "grayscale", **(lenet_part.get("preprocessing") or {})}
    lenet_part["time_budget_seconds"] = 0  # likewise
    lenet_part["dataset"] = extra["dataset"]
    resolved = lenet_family.resolve_config({**lenet_part, "model": lenet_family.MODEL_NAME})
    resolved.update(extra)
    resolved["model"] = MODEL_NAME
    for key in ("labels_per_class", "train_size", "valid_size"):
        check_int(resolved, key, optional=True)
    resolved["sweep_id"] = config.get("sweep_id")
    check_choice(resolved, "strategy", STRATEGIES)
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
    check_number(resolved, "pseudo_label_threshold", 0.0, 1.0)
    check_choice(resolved, "pseudo_labels", PSEUDO_LABEL_METHODS)
    if resolved["strategy"] in NEEDS_SOURCE and not resolved["source_run"]:
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
    _check_self_training(resolved)
    resolved["weights"] = f"run:{Path(resolved['source_run']).name}" if (
        resolved["source_run"] and resolved["strategy"] != support.SCRATCH) else "none"
    return resolved


def _check_self_training(resolved: dict) -> None:
    if resolved["strategy"] != SELF_TRAINING:
        if resolved["unlabelled_dataset"] is not None:
            raise ValueError(f"unlabelled_dataset is only read by strategy {SELF_TRAINING!r}, "
                             f"received it with strategy {resolved['strategy']!r}")
        return
    if not resolved["unlabelled_dataset"]:
        raise ValueError(f"strategy {SELF_TRAINING!r} needs an unlabelled_dataset (images whose "
                         "labels are never read); received none")
    support.check_dataset({"dataset": resolved["unlabelled_dataset"]})
    if resolved["labels_per_class"] is not None:
        raise ValueError(f"strategy {SELF_TRAINING!r} trains on the whole labelled dataset; "
                         f"received labels_per_class={resolved['labels_per_class']}")
    if resolved["classes"] != resolved["source_classes"]:
        raise ValueError(f"strategy {SELF_TRAINING!r} keeps the source's classifier, so classes "
                         f"must be the source's ({resolved['source_classes']}); received "
                         f"{resolved['classes']}")


def adapt_batch_norm(model, images, batch_size: int = STATISTICS_BATCH_SIZE) -> int:
    """Re-estimates every top-level BatchNormalization layer's statistics on ``images`` (AdaBN).

    Layers are updated in graph order, each from its input as computed with the already
    updated layers before it, in inference mode (no augmentation, no dropout). The statistics
    are accumulated batch by batch, so memory stays at one batch of features.

    Args:
        model: a functional Keras model.
        images: preprocessed images, as the model takes them.
        batch_size: images per forward pass.

    Returns:
        The number of layers updated.
    """
    import keras

    updated = 0
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        features = keras.Model(model.inputs, layer.input)
        total = total_squares = None
        count = 0
        for start in range(0, len(images), batch_size):
            batch = np.asarray(features.predict_on_batch(images[start:start + batch_size]), dtype=np.float64)
            batch = batch.reshape(-1, batch.shape[-1])
            total = batch.sum(axis=0) if total is None else total + batch.sum(axis=0)
            squares = np.square(batch).sum(axis=0)
            total_squares = squares if total_squares is None else total_squares + squares
            count += len(batch)
        if not count:
            return updated
        mean = total / count
        layer.moving_mean.assign(mean.astype("float32"))
        layer.moving_variance.assign(np.maximum(total_squares / count - mean ** 2, 0.0).astype("float32"))
        updated += 1
    return updated


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
        set_batch_norm_momentum(model, config["batch_norm_momentum"])
        return model, []
    clone = keras.models.clone_model(source_model)  # same graph, fresh random weights
    classifier = clone.layers[-1]
    if type(classifier).__name__ != "Dense":
        raise ValueError(f"the source model must end in a Dense classifier, its last layer is "
                         f"{classifier.name!r} ({type(classifier).__name__})")
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=classifier.name)(classifier.input)
    model = keras.Model(clone.inputs, outputs, name=f"{source_model.name}_transfer")
    set_batch_norm_momentum(model, config["batch_norm_momentum"])
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
    if config["strategy"] == SELF_TRAINING:
        _self_train(context, source_model)
        return
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


def _self_train(context, source_model) -> None:
    """Strategy ``self-training`` (see the module docstring)."""
    import keras

    from core import datasets
    from core.datasets.preprocess import source_image_size
    from core.models import lenet
    from core.training.callbacks import save_model_atomic
    from core.training.trainer import prepare_split

    config = context.config
    train_split, val_split, test_split, class_names = support.load_and_seed(context)
    name = config["unlabelled_dataset"]
    support.set_phase(context, f"Loading the unlabelled images of {name} (their labels are never read)")
    unlabelled = prepare_split(
        datasets.load(name, "train", source_image_size(config["preprocessing"]), seed=config["seed"]),
        config["preprocessing"]).images
    context.raise_if_cancelled()
    with context.scope():
        model = keras.models.clone_model(source_model)
        model.set_weights(source_model.get_weights())
    set_batch_norm_momentum(model, config["batch_norm_momentum"])
    adapt_batch_norm(model, unlabelled)
    keep, pseudo_labels = _pseudo_label(model, unlabelled, config)
    images = np.concatenate([train_split.images, unlabelled[keep]])
    labels = np.concatenate([train_split.labels, pseudo_labels[keep]]).astype(train_split.labels.dtype)
    epochs = config["epochs"]
    learning_rate = config["learning_rate"] * config["fine_tune_learning_rate_factor"]
    steps_per_epoch = max(1, math.ceil(len(images) / config["batch_size"]))
    with context.scope():
        model.compile(optimizer=lenet.make_optimizer(
            {**config, "learning_rate": learning_rate, "epochs": epochs}, steps_per_epoch),
            loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    support.set_phase(context, f"self-training: {int(keep.sum()):,} of {len(unlabelled):,} unlabelled "
                        f"{name} images pseudo-labelled ({config['pseudo_labels']}, confidence >= "
                        f"{config['pseudo_label_threshold']:g}) beside {len(train_split):,} labelled "
                        f"ones, {epochs} epochs at learning rate {learning_rate:g}")
    model.fit(images, labels, batch_size=config["batch_size"], epochs=epochs, shuffle=True, verbose=0,
              validation_data=(val_split.images, val_split.labels),
              callbacks=context.callbacks(epochs, epoch_offset=context.epochs_done()))
    if context.cancelled:
        return
    best = context.load_best_model()
    adapt_batch_norm(best, unlabelled)
    save_model_atomic(best, context.model_path)
    extra = {"strategy": SELF_TRAINING, "source_run": Path(config["source_run"]).name,
             "unlabelled_dataset": name, "unlabelled_images": int(len(unlabelled)),
             "pseudo_labelled_images": int(keep.sum()), "pseudo_labels": config["pseudo_labels"],
             "learning_rate_used": learning_rate}
    context.write_results(best, test_split, val_split, num_train_images=len(images),
                          class_names=class_names, extra=extra)
    support.set_phase(context, "Done")


def _pseudo_label(model, unlabelled, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, labels)`` for the unlabelled images by ``config["pseudo_labels"]``
    (``core.training.pseudo_labels``). One pass gives the probabilities and the features (the
    ``predictions`` layer's input) that "centroids" uses."""
    import keras

    both = keras.Model(model.inputs, [model.get_layer(FEATURES_LAYER).input, model.outputs[0]])
    features, probabilities = both.predict(unlabelled, batch_size=STATISTICS_BATCH_SIZE, verbose=0)
    return select_pseudo_labels(config["pseudo_labels"], probabilities, features,
                                threshold=config["pseudo_label_threshold"])


def train(context) -> None:
    """Trains one few-shot run (see the module docstring); ``context`` is a ``RunContext``."""
    _train_lenet_transfer(context)
