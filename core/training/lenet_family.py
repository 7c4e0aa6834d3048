"""The LeNet-5 model family: ``resolve_config(config)`` and ``train(context)``.

Config keys (CLI option names; every default comes from ``core.models.lenet.PRESETS``):

* ``model`` (``"lenet5"``), ``preset`` (seed | classic | plus), ``dataset`` (default ``gtsrb``),
  ``epochs``, ``batch_size``, ``optimizer`` (adam | sgd), ``learning_rate``, ``lr_schedule``
  (constant | cosine | step), ``momentum``;
* the architecture: ``conv_filters``, ``kernel_size``, ``padding``, ``activation``, ``pooling``,
  ``batch_norm``, ``multi_scale``, ``dense_units``, ``dropout``, ``random_blur``, ``block_order``
  (auto | textbook | pool-first: where each conv stage pools, ``lenet.BLOCK_ORDERS``),
  ``spatial_transformer`` and ``spatial_transformer_size`` (the side of the transformer's
  output, which the conv stages see; 0 = the image size);
* ``preprocessing`` and ``augmentation``: specs of ``core.datasets.preprocess`` (merged key by key
  over the preset's); a top-level ``image_size`` sets ``preprocessing.image_size``;
* data size (None = all): ``labels_per_class`` (training images per class), ``train_size`` and
  ``valid_size`` (stratified caps, passed to ``core.datasets.load``; dogs-vs-cats subsample
  sizes), ``max_test_images`` (a seeded subset of the test split);
* ``epoch_repeats``: passes over the training set per epoch (fresh augmentation each time);
* ``weight_averaging``: momentum of an exponential moving average of the weights, in [0, 1)
  (0 = off); the average is what is validated and saved (the seed preset uses 0.999);
* ``label_smoothing``: share of each training target spread over all classes, in [0, 1) (0 = off);
* ``weight_decay``: decoupled weight decay, in [0, 1) (0 = off; ``lenet.make_optimizer``);
* ``mirror_signs``: add the mirror images that are signs too (``core.datasets.signs.
  mirrored_signs``: left-right mirrors of symmetric signs and of mirror pairs such as keep
  right/keep left, upside-down and half-turned copies of a few) to the training set; the
  43 GTSRB classes only (gtsrb, synthetic-signs);
* ``batch_branches``: parts each training batch is cut into, run through the network side by
  side, each on its share of the cores (``lenet.build_batch_branches``; the seed preset uses
  ``lenet.SEED_BATCH_BRANCHES``, others 1). It needs a network without batch norm, one network
  (``committee_size`` 1) and ``distribute`` "none": when a config does not name it, a preset's
  value falls back to 1 where those do not hold; a config that asks for more is refused;
* ``committee_size``: networks trained side by side that vote by averaging (1 = one network; the
  ``committee`` preset uses several, see ``lenet.build_committee``);
* ``time_budget_seconds``: seconds the run may take from its start (0 = no limit; the plus
  preset has ``lenet.PLUS_TIME_BUDGET_SECONDS``): when the epochs left would not fit, training
  ends after fewer epochs and a cosine schedule is shortened to end there
  (``core.training.callbacks.TimeBudget``); ``results.json["time_budget"]`` records it. A
  resumed run (``core.jobs.resume``) counts the budget afresh from its resumption;
* ``seed`` (0) and ``distribute`` (none | mirrored);
* ``generator_version``: set by ``resolve_config`` for the synthetic-signs dataset (the
  ``core.datasets.synthetic_signs.GENERATOR_VERSION`` that draws its images; another value is
  refused), absent elsewhere.
"""

from __future__ import annotations

import math

import numpy as np

from core.models import lenet
from core.training.config_checks import check_choice, check_int, check_number
from core.training.trainer import DISTRIBUTE_OPTIONS
from core.training.transfer_support import check_dataset

MODEL_NAME = "lenet5"
DEFAULT_DATASET = "gtsrb"
DATA_KEYS = ("labels_per_class", "train_size", "valid_size", "max_test_images")
GENERAL_KEYS = ("model", "preset", "dataset", "seed", "distribute", "image_size",
                "generator_version")
# Keys added after runs were made, with the value those older runs trained with: an older
# config without the key is compared as having it (``core.reports.implied_settings``).
IMPLIED_WHEN_ABSENT = {"weight_decay": 0.0, "batch_branches": 1}
# Options of other families that the CLI may pass; LeNet accepts them only when empty.
FOREIGN_KEYS = ("strategy", "weights")
# Training steps per compiled call. LeNet's steps take a few ms, so per-step Python and callback
# overhead is a visible share of an epoch; 32 steps per call measured 1.12x faster epochs than
# Keras' default on 2 idle cores. Batch callbacks (progress, cancel) then fire every 32 steps.
# ``bench/bench_lenet_fit.py`` measures the whole job path (this, oneDNN kernels in the worker,
# one RandomAffine resampling, batch branches) against a plain fit.
STEPS_PER_EXECUTION = 32
ALLOWED_KEYS = frozenset(
    set(lenet.PRESETS[lenet.DEFAULT_PRESET]) | set(DATA_KEYS) | set(GENERAL_KEYS) | set(FOREIGN_KEYS)
)


def _int_list(config: dict, key: str, allow_empty: bool = False) -> None:
    value = config.get(key)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [int(value)]
    if not isinstance(value, (list, tuple)) or (not value and not allow_empty) or any(
        isinstance(item, bool) or not isinstance(item, (int, np.integer)) or item < 1 for item in value
    ):
        raise ValueError(f"{key} must be a list of positive ints, received {config.get(key)!r}")
    config[key] = [int(item) for item in value]


def resolve_config(config: dict, runs_root=None) -> dict:
    """Fills every default from the preset and validates.

    Args:
        config: at least ``{"model": "lenet5"}``; any key listed in the module docstring.
        runs_root: unused (a LeNet has no source run); every family takes it.

    Returns:
        A new, complete config (what ``config.json`` stores).

    Raises:
        ValueError: for an unknown key or preset, or a value out of range.
    """
    from core.datasets import preprocess

    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, received {type(config).__name__}")
    model = config.get("model", MODEL_NAME)
    if model != MODEL_NAME:
        raise ValueError(f"the LeNet family trains model {MODEL_NAME!r}, received {model!r}")
    unknown = sorted(set(config) - ALLOWED_KEYS)
    if unknown:
        raise ValueError(f"unknown LeNet setting(s) {unknown}; expected some of {sorted(ALLOWED_KEYS)}")
    for key in FOREIGN_KEYS:
        if config.get(key) not in (None, ""):
            raise ValueError(f"{key} applies to the vgg16 transfer model, not to lenet5; "
                             f"received {key}={config[key]!r}")
    preset = config.get("preset") or lenet.DEFAULT_PRESET
    resolved = lenet.preset_config(preset)
    resolved.update(model=MODEL_NAME, preset=preset, dataset=DEFAULT_DATASET, seed=0,
                    distribute="none", **{key: None for key in DATA_KEYS})
    for key, value in config.items():
        if key in ("preprocessing", "augmentation"):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ValueError(f"{key} must be a dict, received {type(value).__name__}")
            resolved[key] = {**resolved[key], **value}
        elif key not in FOREIGN_KEYS and key != "image_size":
            resolved[key] = value
    if config.get("image_size") is not None:
        resolved["preprocessing"]["image_size"] = config["image_size"]
    if "center_crop" not in (config.get("preprocessing") or {}) and (
            resolved["dataset"] not in lenet.CENTER_CROP_DATASETS):
        # A preset's crop trims GTSRB's margin; other images keep their whole frame unless asked.
        resolved["preprocessing"]["center_crop"] = 1.0
    resolved["preset"] = preset
    check_dataset(resolved)
    _record_generator_version(resolved)
    for key in ("epochs", "batch_size", "epoch_repeats", "committee_size"):
        check_int(resolved, key)
    check_int(resolved, "seed", minimum=0)
    check_int(resolved, "time_budget_seconds", minimum=0)
    for key in DATA_KEYS:
        check_int(resolved, key, optional=True)
    check_choice(resolved, "optimizer", lenet.OPTIMIZERS)
    check_choice(resolved, "lr_schedule", lenet.LR_SCHEDULES)
    check_choice(resolved, "activation", lenet.ACTIVATIONS)
    check_choice(resolved, "pooling", lenet.POOLINGS)
    check_choice(resolved, "padding", lenet.PADDINGS)
    lenet.check_block_order(resolved["block_order"], resolved["pooling"])
    lenet.check_spatial_transformer_size(resolved["spatial_transformer_size"],
                                         resolved["spatial_transformer"] is True)
    resolved["distribute"] = resolved.get("distribute") or "none"
    check_choice(resolved, "distribute", DISTRIBUTE_OPTIONS)
    check_number(resolved, "learning_rate", 1e-8, 10.0)
    check_number(resolved, "momentum", 0.0, 1.0, high_open=True)
    check_number(resolved, "dropout", 0.0, 1.0, high_open=True)
    check_number(resolved, "random_blur", 0.0, 1.0)
    check_number(resolved, "weight_averaging", 0.0, 1.0, high_open=True)
    check_number(resolved, "label_smoothing", 0.0, 1.0, high_open=True)
    check_number(resolved, "weight_decay", 0.0, 1.0, high_open=True)
    for key in ("batch_norm", "multi_scale", "mirror_signs", "spatial_transformer"):
        if not isinstance(resolved[key], bool):
            raise ValueError(f"{key} must be true or false, received {resolved[key]!r}")
    _check_batch_branches(resolved, asked="batch_branches" in config)
    _int_list(resolved, "conv_filters")
    _int_list(resolved, "dense_units", allow_empty=True)
    kernel = resolved["kernel_size"]
    if isinstance(kernel, (list, tuple)):
        _int_list(resolved, "kernel_size")
        if len(resolved["kernel_size"]) != len(resolved["conv_filters"]):
            raise ValueError(f"kernel_size must be one int or one per conv stage "
                             f"({len(resolved['conv_filters'])}), received {kernel!r}")
    else:
        check_int(resolved, "kernel_size")
    resolved["preprocessing"] = preprocess.resolve_preprocessing(resolved["preprocessing"])
    resolved["augmentation"] = preprocess.resolve_augmentation(resolved["augmentation"])
    _check_fits(resolved)
    return resolved


def _check_batch_branches(resolved: dict, asked: bool) -> None:
    """Checks ``batch_branches``; a preset's value that cannot apply falls back to 1.

    Args:
        resolved: the config being resolved (changed in place).
        asked: whether the user's config named ``batch_branches`` (then a conflict is an error).
    """
    check_int(resolved, "batch_branches", maximum=lenet.MAX_BATCH_BRANCHES)
    if resolved["batch_branches"] == 1:
        return
    conflicts = [f"{key}={resolved[key]!r}" for key, allowed in
                 (("batch_norm", False), ("committee_size", 1), ("distribute", "none"))
                 if resolved[key] != allowed]
    if not conflicts:
        return
    if asked:
        raise ValueError(f"batch_branches {resolved['batch_branches']} needs batch_norm false, "
                         f"committee_size 1 and distribute 'none'; received {', '.join(conflicts)}")
    resolved["batch_branches"] = 1


def _record_generator_version(resolved: dict) -> None:
    """Stores which synthetic-signs generator drew a run's data (``generator_version``).

    The generator's images change between versions, so a source run trained on an older
    version must not be reused as if it were current (``core.experiments.find_source_run``).
    Other datasets have no such key.
    """
    if resolved["dataset"] != "synthetic-signs":
        if resolved.get("generator_version") is not None:
            raise ValueError("generator_version applies to the synthetic-signs dataset only, received "
                             f"generator_version={resolved['generator_version']!r} for dataset "
                             f"{resolved['dataset']!r}")
        resolved.pop("generator_version", None)
        return
    from core.datasets.synthetic_signs import GENERATOR_VERSION

    asked = resolved.get("generator_version")
    if asked is not None and asked != GENERATOR_VERSION:
        raise ValueError(f"this code draws synthetic signs with generator version {GENERATOR_VERSION}, "
                         f"received generator_version={asked!r} (a run on another version cannot "
                         "be re-created or resumed)")
    resolved["generator_version"] = GENERATOR_VERSION


def _check_fits(config: dict) -> None:
    """Checks that the conv stages leave at least one pixel for the size they see (the image's,
    or the spatial transformer's output)."""
    side = config.get("spatial_transformer_size") or config["preprocessing"]["image_size"]
    kernels = config["kernel_size"]
    kernels = kernels if isinstance(kernels, list) else [kernels] * len(config["conv_filters"])
    for stage, kernel in enumerate(kernels, start=1):
        if config["padding"] == "valid":
            side -= kernel - 1
        side //= 2
        if side < 1:
            raise ValueError(
                f"image_size {config['preprocessing']['image_size']} (spatial_transformer_size "
                f"{config.get('spatial_transformer_size') or 0}) is too small for "
                f"{len(kernels)} conv stages with kernel sizes {kernels} (stage {stage} has no "
                "pixels left); use a larger image_size, padding 'same' or fewer stages"
            )


def compile_lenet(model, config: dict, steps_per_epoch: int,
                  steps_per_execution: int = STEPS_PER_EXECUTION, learning_rate=None) -> None:
    """Compiles a LeNet the way the job path trains it (the speed bench uses the same call).

    Args:
        model: a model from ``lenet.build_from_config``.
        config: its resolved config (optimizer, learning rate and schedule, label smoothing).
        steps_per_epoch: batches per epoch (the learning-rate schedule's length depends on it).
        steps_per_execution: training steps run per compiled call (1 = plain ``model.fit``).
        learning_rate: the rate or schedule to use (default: ``lenet.learning_rate_schedule``);
            pass one to keep a handle on it, as a time budget does.
    """
    model.compile(optimizer=lenet.make_optimizer(config, steps_per_epoch, learning_rate),
                  loss=lenet.make_loss(config), metrics=lenet.make_metrics(config),
                  steps_per_execution=int(steps_per_execution))


def build_models(config: dict, num_classes: int, input_shape) -> tuple:
    """Builds the model a resolved config trains, and the one it saves.

    Args:
        config: a resolved LeNet config.
        num_classes: output units.
        input_shape: (height, width, channels) of the preprocessed images.

    Returns:
        ``(fit_model, model)``: ``model`` is what is validated against, saved and served; the
        ``fit_model`` trains its weights. They differ for a committee (every member's output,
        ``lenet.build_committee``), where a stage pools right after its convolution (its bias
        is added after the pooling: ``folding.bias_after_pooling``) and with
        ``batch_branches`` > 1 (``lenet.build_batch_branches``); otherwise both are the same
        model.
    """
    from core.datasets import preprocess
    from core.models import folding

    def make_augmentation():
        return preprocess.build_augmentation(config["augmentation"])

    if config["committee_size"] > 1:  # fit the members side by side, save their vote
        return lenet.build_committee(config, num_classes, input_shape, make_augmentation)
    model = lenet.build_from_config(config, num_classes, input_shape, make_augmentation())
    fit_model = folding.bias_after_pooling(model)  # the same function, a cheaper gradient
    return lenet.build_batch_branches(fit_model, int(config.get("batch_branches", 1))), model


def _with_mirrored_signs(images, labels, class_names):
    """The training arrays plus ``signs.mirrored_signs``' extra images."""
    from core.datasets import signs

    if tuple(class_names) != signs.CLASS_NAMES:
        raise ValueError("mirror_signs needs the 43 GTSRB classes (datasets gtsrb or synthetic-signs), "
                         f"received {len(class_names)} classes starting {list(class_names[:3])}")
    extra_images, extra_labels = signs.mirrored_signs(images, labels)
    return np.concatenate([images, extra_images]), np.concatenate([labels, extra_labels])


def train(context) -> None:
    """Loads the data, builds and fits the LeNet, then writes ``results.json``.

    Args:
        context: a ``core.training.trainer.RunContext``.
    """
    import keras

    from core.training.trainer import load_prepared_splits

    config = context.config
    logger = context.logger
    logger.info("Loading %s (preset %s)", config["dataset"], config["preset"])
    train_split, val_split, test_split = load_prepared_splits(config, logger)
    logger.info("Images: %d train, %d val, %s test", len(train_split), len(val_split),
                len(test_split) if test_split is not None else "no")
    context.raise_if_cancelled()
    context.check_batch_size(config["batch_size"])
    train_split, val_split = context.for_replicas(train_split), context.for_replicas(val_split)
    class_names = train_split.class_names
    context.set_class_names(class_names)
    keras.utils.set_random_seed(config["seed"])
    batch_size = config["batch_size"]
    repeats = config["epoch_repeats"]
    train_images, train_labels = train_split.images, train_split.labels
    if config["mirror_signs"]:
        train_images, train_labels = _with_mirrored_signs(train_images, train_labels, class_names)
        logger.info("Mirrored signs: %d extra training images", len(train_labels) - len(train_split))
    if repeats > 1:  # each copy is augmented afresh in the graph: a larger training set per epoch
        train_images = np.concatenate([train_images] * repeats)
        train_labels = np.concatenate([train_labels] * repeats)
    steps_per_epoch = max(1, math.ceil(len(train_labels) / batch_size))
    input_shape = tuple(train_split.images.shape[1:])
    with context.scope():
        fit_model, model = build_models(config, len(class_names), input_shape)
        schedule = lenet.learning_rate_schedule(config, steps_per_epoch)
        # Keras' multi-step loop fails under MirroredStrategy ("must feed a value for
        # placeholder tensor"), so a distributed fit runs one step per call.
        compile_lenet(fit_model, config, steps_per_epoch,
                      STEPS_PER_EXECUTION if config["distribute"] == "none" else 1, schedule)
    logger.info("Model %s: %d parameters, %d steps per epoch%s", model.name, model.count_params(),
                steps_per_epoch, f", each batch in {config['batch_branches']} parts side by side"
                if config.get("batch_branches", 1) > 1 else "")
    epochs = config["epochs"]
    fit_model.fit(
        train_images, train_labels,
        batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
        validation_data=(val_split.images, val_split.labels),
        callbacks=lenet.weight_averaging_callbacks(config) + context.callbacks(
            epochs, model_to_save=None if fit_model is model else model,
            time_budget_seconds=config["time_budget_seconds"],
            schedule=schedule if hasattr(schedule, "set_decay_steps") else None,
            steps_per_epoch=steps_per_epoch),
    )
    if context.cancelled:
        return
    context.write_results(context.load_best_model(), test_split, val_split,
                          num_train_images=len(train_split), class_names=class_names)
