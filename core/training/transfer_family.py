"""Transfer-learning families: ``resolve_config(config)`` and ``train(context)``.

Two kinds of model, one module (``core.training.families`` maps all three names here):

**``vgg16`` / ``mobilenetv2``** — the study's second experiment (Dogs vs Cats by default). Config
keys (CLI option names) and defaults:

* ``strategy``: ``feature-extraction`` (frozen base + new head), ``fine-tune`` (feature
  extraction, then block5 unfrozen at ``fine_tune_learning_rate``), ``scratch`` (same graph,
  random weights, everything trainable);
* ``weights``: ``imagenet`` | a file path | ``local`` | ``run:<id>`` | ``none`` (scratch
  always uses ``none``; a weights option given to scratch is recorded and ignored);
* ``dataset`` ``dogs-vs-cats``, ``image_size`` 224, ``train_size`` 2000, ``valid_size`` 500,
  ``classes``/``labels_per_class`` (None), ``seed`` 0;
* ``epochs`` 100 (the whole budget, all stages), ``fine_tune_epochs`` (fine-tune only:
  epochs spent with block5 unfrozen; default half of ``epochs``, at least 1);
* ``batch_size`` 100, ``optimizer`` sgd, ``learning_rate`` 1e-4, ``momentum`` 0.9,
  ``fine_tune_learning_rate`` (``learning_rate`` / 10);
* ``head_units`` 256, ``dropout`` 0.5;
* ``augmentation``: a ``core.datasets.preprocess`` augmentation spec; the study's rotation +
  horizontal flip for Dogs vs Cats, rotation/shift/zoom (no flip) for the signs; ``{}`` = off;
* ``bottleneck`` (True): train a frozen base's head on cached features; ``bottleneck_copies``
  (K, 5 with augmentation, else 1): augmented copies of the training set precomputed.

**``lenet5-transfer``** — the offline few-shot experiment (Yosinski et al. 2014 in small): a
LeNet-sized network, either trained on a source task, or built from a finished ``source_run``
whose first ``transfer_layers`` weighted layers are copied (``feature-extraction``: frozen, the
paper's AnB; ``fine-tune``: trainable, AnB+) while the rest, and a new classifier, start random.
``scratch`` with a ``source_run`` uses the source's architecture with random weights (the
control). Keys: the LeNet keys of ``core.models.lenet`` (``preset`` default ``plus``; ignored when
a ``source_run`` fixes the architecture), plus ``classes``, ``labels_per_class``,
``source_run``, ``transfer_layers`` (n, counted over conv and dense layers in graph order;
None = every convolution: the source's feature extractor, with a freshly initialised head),
``head_epochs`` (fine-tune: the first third of the epochs train only the new layers with the
copied ones frozen, then everything trains at ``fine_tune_learning_rate_factor`` (0.3) times the
preset's learning rate; the same epochs as scratch in total), ``batch_norm_momentum`` (0.9 instead of Keras' 0.99: a few-shot run takes only a few
hundred steps, and with 0.99 the moving statistics are still mostly their initial values, so
inference would be near chance), ``experiment`` / ``role`` (labels for the pages).

Every run stores ``preprocessing`` (for the ``Predictor``), writes ``class_names.json`` and
scores its best ``model.keras`` into ``results.json`` with backbone facts under ``extra`` keys.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np

from core.training.config_checks import check_choice, check_int

VGG16_MODEL = "vgg16"
MOBILENET_V2_MODEL = "mobilenetv2"
LENET_TRANSFER_MODEL = "lenet5-transfer"
BACKBONE_MODELS = (VGG16_MODEL, MOBILENET_V2_MODEL)
MODEL_NAMES = BACKBONE_MODELS + (LENET_TRANSFER_MODEL,)

FEATURE_EXTRACTION = "feature-extraction"
FINE_TUNE = "fine-tune"
SCRATCH = "scratch"
STRATEGIES = (FEATURE_EXTRACTION, FINE_TUNE, SCRATCH)
TRANSFER_STRATEGIES = (FEATURE_EXTRACTION, FINE_TUNE)

DATASETS = ("dogs-vs-cats", "gtsrb", "synthetic-signs")
DEFAULT_DATASET = "dogs-vs-cats"
OPTIMIZERS = ("sgd", "adam")
DISTRIBUTE_OPTIONS = ("none", "mirrored")

# The study's settings (seminar slide "VGG16 on Dogs vs Cats").
STUDY_DEFAULTS = {
    "strategy": FEATURE_EXTRACTION,
    "dataset": DEFAULT_DATASET,
    "weights": "imagenet",
    "image_size": 224,
    "train_size": 2000,
    "valid_size": 500,
    "classes": None,
    "labels_per_class": None,
    "epochs": 100,
    "fine_tune_epochs": None,
    "batch_size": 100,
    "optimizer": "sgd",
    "learning_rate": 1e-4,
    "momentum": 0.9,
    "fine_tune_learning_rate": None,
    "head_units": 256,
    "dropout": 0.5,
    "augmentation": None,
    "bottleneck": True,
    "bottleneck_copies": None,
    "seed": 0,
    "distribute": "none",
    "preprocessing": None,
    "sweep_id": None,
    "experiment": None,
    "role": None,
}
FINE_TUNE_LR_DIVISOR = 10.0
DEFAULT_BOTTLENECK_COPIES = 5
MAX_BOTTLENECK_COPIES = 50
AUGMENTATION_DEFAULTS = {
    "dogs-vs-cats": {"rotation_degrees": 20.0, "flip": "horizontal"},
    "gtsrb": {"rotation_degrees": 10.0, "shift": 0.1, "zoom": 0.1},
    "synthetic-signs": {"rotation_degrees": 10.0, "shift": 0.1, "zoom": 0.1},
}

# Few-shot LeNet transfer.
LENET_TRANSFER_DEFAULTS = {
    "strategy": SCRATCH,
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
SOURCE_WAIT_POLL_SECONDS = 2.0
WEIGHTED_LAYER_TYPES = ("Conv2D", "Dense", "DepthwiseConv2D", "SeparableConv2D")
CONV_LAYER_TYPES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")


# --- config -------------------------------------------------------------------------------------

def resolve_config(config: dict) -> dict:
    """Fills every default and validates a transfer config.

    Args:
        config: at least ``{"model": "vgg16"}`` (or ``mobilenetv2`` / ``lenet5-transfer``).

    Returns:
        The complete config stored in ``config.json``.

    Raises:
        ValueError: for an unknown model, strategy, dataset or a value out of range.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, received {type(config).__name__}")
    model = config.get("model", VGG16_MODEL)
    if model not in MODEL_NAMES:
        raise ValueError(f"the transfer family trains models {MODEL_NAMES}, received {model!r}")
    if model == LENET_TRANSFER_MODEL:
        return _resolve_lenet_transfer(config)
    return _resolve_backbone_config(config)



def _check_float(config: dict, key: str, low: float, high: float) -> None:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
        low <= float(value) <= high
    ):
        raise ValueError(f"{key} must be a number in [{low}, {high}], received {value!r}")
    config[key] = float(value)



def _check_classes(config: dict) -> None:
    classes = config.get("classes")
    if classes is None:
        return
    if isinstance(classes, (int, np.integer)) or not isinstance(classes, (list, tuple)) or not classes or any(
        isinstance(item, bool) or not isinstance(item, (int, np.integer)) or item < 0 for item in classes
    ):
        raise ValueError(f"classes must be null or a non-empty list of class ids, received {classes!r}")
    config["classes"] = [int(item) for item in classes]


def _resolve_backbone_config(config: dict) -> dict:
    from core.datasets import preprocess
    from core.models import backbones

    unknown = sorted(set(config) - set(STUDY_DEFAULTS) - {"model", "preset"})
    if unknown:
        raise ValueError(
            f"unknown transfer setting(s) {unknown}; expected some of {sorted(STUDY_DEFAULTS)}"
        )
    if config.get("preset") not in (None, ""):
        raise ValueError(f"preset applies to lenet5, not to {config['model']}; "
                         f"received preset={config['preset']!r}")
    resolved = copy.deepcopy(STUDY_DEFAULTS)
    resolved.update({key: value for key, value in config.items()
                     if value is not None or key in ("augmentation", "classes", "labels_per_class")})
    resolved.pop("preset", None)
    resolved["model"] = config.get("model", VGG16_MODEL)
    backbone = resolved["model"]
    check_choice(resolved, "strategy", STRATEGIES)
    from core.datasets import base as dataset_base

    dataset_base.check_name(resolved["dataset"])  # built-in or installed custom (DatasetError)
    check_choice(resolved, "optimizer", OPTIMIZERS)
    resolved["distribute"] = resolved.get("distribute") or "none"
    check_choice(resolved, "distribute", DISTRIBUTE_OPTIONS)
    for key in ("image_size", "epochs", "batch_size", "head_units"):
        check_int(resolved, key)
    check_int(resolved, "seed", minimum=0)
    for key in ("train_size", "valid_size", "labels_per_class", "fine_tune_epochs"):
        check_int(resolved, key, optional=True)
    if resolved["image_size"] < 32:
        raise ValueError(f"image_size must be at least 32 for {backbone}, received {resolved['image_size']}")
    _check_classes(resolved)
    if resolved["dataset"] != "dogs-vs-cats":
        # For the signs, train_size/valid_size are optional caps (default: every image).
        if "train_size" not in config:
            resolved["train_size"] = None
        if "valid_size" not in config:
            resolved["valid_size"] = None
    _check_float(resolved, "learning_rate", 1e-9, 10.0)
    _check_float(resolved, "momentum", 0.0, 0.999)
    _check_float(resolved, "dropout", 0.0, 0.99)
    if resolved["fine_tune_learning_rate"] is None:
        resolved["fine_tune_learning_rate"] = resolved["learning_rate"] / FINE_TUNE_LR_DIVISOR
    _check_float(resolved, "fine_tune_learning_rate", 1e-10, 10.0)
    strategy = resolved["strategy"]
    if strategy == FINE_TUNE:
        if backbone != VGG16_MODEL:
            raise ValueError(f"fine-tune unfreezes VGG16's block5; model {backbone!r} has none. "
                             "Use feature-extraction or scratch")
        if resolved["fine_tune_epochs"] is None:
            resolved["fine_tune_epochs"] = max(1, resolved["epochs"] // 2)
        if not 1 <= resolved["fine_tune_epochs"] <= resolved["epochs"]:
            raise ValueError(
                f"fine_tune_epochs must be between 1 and epochs ({resolved['epochs']}), "
                f"received {resolved['fine_tune_epochs']}"
            )
    else:
        resolved["fine_tune_epochs"] = None
    # Weights: scratch ignores them (recorded so the UI can say so).
    requested = resolved.get("weights")
    if strategy == SCRATCH:
        if requested not in (None, "none", backbones.NONE, STUDY_DEFAULTS["weights"]) and "weights" in config:
            resolved["weights_ignored"] = str(requested)
        resolved["weights"] = backbones.NONE
    else:
        choice = backbones.parse_weights(requested, backbone)
        if not choice.pretrained:
            raise ValueError(
                f"{strategy} needs pretrained weights ('imagenet', a file, 'local' or 'run:<id>'); "
                f"received weights={requested!r}. Use strategy 'scratch' for random weights"
            )
        if choice.kind == "run":
            resolved["source_run_dir"] = str(_source_run_dir(choice.run))
        resolved["weights"] = choice.as_setting()
        if choice.kind == "file":
            resolved["weights_md5"] = backbones.file_md5(choice.path)
    # Augmentation (a spec dict; {} or False = off).
    augmentation = resolved.get("augmentation")
    if augmentation is None:
        augmentation = AUGMENTATION_DEFAULTS.get(resolved["dataset"], {})
    if augmentation is False:
        augmentation = {}
    resolved["augmentation"] = preprocess.resolve_augmentation(augmentation)
    augment = augmentation_enabled(resolved["augmentation"])
    if not isinstance(resolved["bottleneck"], bool):
        raise ValueError(f"bottleneck must be true or false, received {resolved['bottleneck']!r}")
    if resolved["bottleneck_copies"] is None:
        resolved["bottleneck_copies"] = DEFAULT_BOTTLENECK_COPIES if augment else 1
    check_int(resolved, "bottleneck_copies")
    if not augment:
        resolved["bottleneck_copies"] = 1
    if resolved["bottleneck_copies"] > MAX_BOTTLENECK_COPIES:
        raise ValueError(f"bottleneck_copies must be at most {MAX_BOTTLENECK_COPIES}, "
                         f"received {resolved['bottleneck_copies']}")
    if strategy == SCRATCH:
        resolved["bottleneck"] = False
    spec = dict(resolved.get("preprocessing") or {})
    spec.update(image_size=resolved["image_size"], color="rgb")
    resolved["preprocessing"] = preprocess.resolve_preprocessing(spec)
    resolved["backbone"] = backbone
    return resolved


def augmentation_enabled(spec: dict | None) -> bool:
    """True when an augmentation spec changes images at all."""
    if not spec:
        return False
    return any(float(spec.get(key) or 0) > 0 for key in
               ("rotation_degrees", "shift", "zoom", "brightness", "contrast")) or (
        spec.get("flip") not in (None, "none", False))


def _source_run_dir(run) -> Path:
    """Resolves a source run (id or folder) and checks it can serve as a backbone."""
    from core import runs

    run_dir = runs.run_path(run)
    if not (run_dir / runs.MODEL_FILE).exists():
        raise ValueError(f"source run {run_dir.name} has no {runs.MODEL_FILE} yet; pick a finished run")
    return run_dir


def _resolve_lenet_transfer(config: dict) -> dict:
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
        raise ValueError(f"unknown {LENET_TRANSFER_MODEL} setting(s) {unknown}; expected LeNet "
                         f"settings or some of {sorted(LENET_TRANSFER_DEFAULTS)}")
    lenet_part["preset"] = extra.pop("preset")
    lenet_part["dataset"] = extra["dataset"]
    resolved = lenet_family.resolve_config({**lenet_part, "model": lenet_family.MODEL_NAME})
    resolved.update(extra)
    resolved["model"] = LENET_TRANSFER_MODEL
    for key in ("labels_per_class", "train_size", "valid_size"):
        check_int(resolved, key, optional=True)
    resolved["sweep_id"] = config.get("sweep_id")
    check_choice(resolved, "strategy", STRATEGIES)
    _check_classes(resolved)
    check_int(resolved, "transfer_layers", optional=True)
    _check_float(resolved, "fine_tune_learning_rate_factor", 1e-4, 10.0)
    _check_float(resolved, "batch_norm_momentum", 0.0, 0.999)
    if resolved["strategy"] == FINE_TUNE:
        if resolved["head_epochs"] is None:
            resolved["head_epochs"] = resolved["epochs"] // 3
        check_int(resolved, "head_epochs", minimum=0)
        if resolved["head_epochs"] >= resolved["epochs"]:
            raise ValueError(f"head_epochs must be below epochs ({resolved['epochs']}), "
                             f"received {resolved['head_epochs']}")
    else:
        resolved["head_epochs"] = None
    if resolved["strategy"] in TRANSFER_STRATEGIES and not resolved["source_run"]:
        raise ValueError(f"strategy {resolved['strategy']!r} needs a source_run (a finished run "
                         "whose layers are copied); received none")
    if resolved["source_run"]:
        from core import runs

        source_dir = runs.run_path(resolved["source_run"])
        resolved["source_run"] = str(source_dir)
        source_config = runs.read_config(source_dir)
        if source_config.get("preprocessing"):
            # The copied filters expect the source's input: reuse its preprocessing exactly.
            resolved["preprocessing"] = preprocess.resolve_preprocessing(source_config["preprocessing"])
        resolved["source_dataset"] = source_config.get("dataset")
        resolved["source_classes"] = source_config.get("classes")
    resolved["weights"] = f"run:{Path(resolved['source_run']).name}" if (
        resolved["source_run"] and resolved["strategy"] != SCRATCH) else "none"
    return resolved


# --- training: shared helpers --------------------------------------------------------------------


def _load_and_seed(context):
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
    return keras.optimizers.Adam(learning_rate=learning_rate)


def _compile(model, optimizer) -> None:
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def _set_phase(context, text: str, **fields) -> None:
    """Shows what the run is doing between epochs (``status.json`` ``phase``) and logs it."""
    from core import runs

    runs.update_status(context.run_dir, phase=text, **fields)
    context.logger.info(text)


# --- training: VGG16 / MobileNetV2 ----------------------------------------------------------------

def resolve_weights_file(config: dict, logger=None) -> Path | None:
    """Turns ``config["weights"]`` into a local file (downloading ImageNet weights if needed).

    Returns:
        The file to load, or None for random weights and for ``run:`` weights (copied later).
    """
    from core.models import backbones

    choice = backbones.parse_weights(config["weights"], config["model"])
    if choice.kind == "imagenet":
        progress = backbones.log_progress(logger.info) if logger is not None else None
        path = backbones.ensure_imagenet_weights(config["model"], image_size=config["image_size"],
                                                 progress=progress)
        return path
    if choice.kind == "file":
        expected = config.get("weights_md5")
        if expected and backbones.file_md5(choice.path) != expected:
            raise backbones.WeightsUnavailableError(
                f"{choice.path} changed since the run was configured (MD5 differs from {expected})"
            )
        return choice.path
    return None


def build_model_for_config(config: dict, num_classes: int, weights_file=None):
    """Builds the transfer model a resolved ``vgg16``/``mobilenetv2`` config describes."""
    from core.datasets import preprocess
    from core.models import vgg16

    augmentation = (preprocess.build_augmentation(config["augmentation"])
                    if augmentation_enabled(config["augmentation"]) else None)
    return vgg16.build_transfer_model(
        num_classes, backbone=config["model"], image_size=config["image_size"],
        weights_file=weights_file, augmentation=augmentation, head_units=config["head_units"],
        dropout_rate=config["dropout"], freeze_base=config["strategy"] != SCRATCH,
    )


def _train_backbone(context) -> None:
    import keras

    from core.models import backbones, vgg16

    config = context.config
    logger = context.logger
    strategy = config["strategy"]
    if strategy != SCRATCH:  # first, so a missing download fails before the data is loaded
        _set_phase(context, f"Preparing {config['model']} weights ({config['weights']})")
    weights_file = resolve_weights_file(config, logger)
    _set_phase(context, f"Loading {config['dataset']} at {config['image_size']} px")
    train_split, val_split, test_split, class_names = _load_and_seed(context)
    with context.scope():
        model = build_model_for_config(config, len(class_names), weights_file)
    copied = None
    if config.get("source_run_dir"):
        from core import runs
        from core.models import register_custom_layers

        register_custom_layers()
        source = keras.saving.load_model(Path(config["source_run_dir"]) / runs.MODEL_FILE,
                                         compile=False, safe_mode=True)
        copied = vgg16.copy_base_weights(source, model)
        logger.info("Copied %d layers from run %s", len(copied), Path(config["source_run_dir"]).name)
    fingerprint = backbones.weights_fingerprint(vgg16.base_layers(model))
    logger.info("Backbone %s, weights %s, fingerprint %s", config["model"], config["weights"],
                fingerprint[:16])
    extra = {"strategy": strategy, "backbone": config["model"], "weights": config["weights"],
             "backbone_fingerprint": fingerprint, "weights_file": str(weights_file) if weights_file else None,
             "weights_file_md5": backbones.file_md5(weights_file) if weights_file else None}
    total_epochs = config["epochs"]
    batch_size = config["batch_size"]
    validation = (val_split.images, val_split.labels)
    if strategy == SCRATCH:
        with context.scope():
            _compile(model, make_optimizer(config["optimizer"], config["learning_rate"], config["momentum"]))
        trainable, frozen = vgg16.count_params(model)
        logger.info("Scratch: %d trainable, %d frozen parameters", trainable, frozen)
        _set_phase(context, "Training every layer from random weights")
        model.fit(train_split.images, train_split.labels, batch_size=batch_size, epochs=total_epochs,
                  shuffle=True, verbose=0, validation_data=validation,
                  callbacks=context.callbacks(total_epochs))
    else:
        stage_one = total_epochs - (config["fine_tune_epochs"] or 0)
        if stage_one > 0:
            if config["bottleneck"]:
                extra.update(_fit_head_on_bottleneck(context, model, train_split, val_split,
                                                     fingerprint, stage_one))
            else:
                with context.scope():
                    _compile(model, make_optimizer(config["optimizer"], config["learning_rate"],
                                                   config["momentum"]))
                _set_phase(context, "Feature extraction: frozen base run every epoch")
                model.fit(train_split.images, train_split.labels, batch_size=batch_size,
                          epochs=stage_one, shuffle=True, verbose=0, validation_data=validation,
                          callbacks=context.callbacks(total_epochs))
        if context.cancelled:
            return
        if strategy == FINE_TUNE:
            if context.model_path.exists():
                # Continue from the best feature-extraction epoch, not from the last one.
                model.set_weights(context.load_best_model().get_weights())
            unfrozen = vgg16.unfreeze_block5(model)
            extra["unfrozen_layers"] = unfrozen
            with context.scope():
                _compile(model, make_optimizer(config["optimizer"], config["fine_tune_learning_rate"],
                                               config["momentum"]))
            trainable, frozen = vgg16.count_params(model)
            _set_phase(context, f"Fine-tuning {', '.join(unfrozen)} at learning rate "
                                f"{config['fine_tune_learning_rate']:g} ({trainable:,} trainable parameters)")
            model.fit(train_split.images, train_split.labels, batch_size=batch_size,
                      epochs=config["fine_tune_epochs"], shuffle=True, verbose=0,
                      validation_data=validation,
                      callbacks=context.callbacks(total_epochs, epoch_offset=context.epochs_done()))
    if context.cancelled:
        return
    _set_phase(context, "Scoring the best model")
    context.write_results(context.load_best_model(), test_split, val_split,
                          num_train_images=len(train_split), class_names=class_names, extra=extra)
    _set_phase(context, "Done")


def _fit_head_on_bottleneck(context, model, train_split, val_split, fingerprint: str,
                            epochs: int) -> dict:
    """Stage one on cached features: the frozen base runs once (K times with augmentation)."""
    from core.models import vgg16
    from core.training import bottleneck

    config = context.config
    copies = config["bottleneck_copies"]
    augmentation = None
    if augmentation_enabled(config["augmentation"]):
        augmentation = model.get_layer(vgg16.AUGMENTATION_NAME)
    key = bottleneck.cache_key(
        weights_fingerprint=fingerprint, dataset=config["dataset"], image_size=config["image_size"],
        copies=copies, backbone=config["model"],
        settings={key: config.get(key) for key in ("preprocessing", "augmentation", "train_size",
                                                  "valid_size", "classes", "labels_per_class", "seed")},
    )
    extractor = vgg16.feature_extractor(model)

    def progress_for(split_name: str, count: int):
        def report(done: int, total: int) -> None:
            if done == total or done % 5 == 0:
                _set_phase(context, f"Computing bottleneck features ({split_name}: {count} images"
                                    f"{f' x {copies} augmented copies' if split_name == 'train' and copies > 1 else ''})"
                                    f" batch {done}/{total}", phase_progress=done / max(total, 1))
        return report

    def compute(split, split_name: str, split_copies: int, layer):
        return lambda: bottleneck.compute_features(
            extractor, split.images, augmentation=layer, copies=split_copies,
            progress=progress_for(split_name, len(split)), should_stop=lambda: context.cancelled)

    try:
        train_features, train_info = bottleneck.cached_features(
            key, "train", compute(train_split, "train", copies, augmentation), train_split.labels)
        val_features, val_info = bottleneck.cached_features(
            key, "val", compute(val_split, "val", 1, None), val_split.labels)
    except InterruptedError:
        context.mark_cancelled()
        return {}
    context.logger.info("Bottleneck cache %s: train %s (%s, %.1f s), val %s (%s, %.1f s)", key,
                        train_features.shape, "hit" if train_info["hit"] else "computed",
                        train_info["seconds"], val_features.shape,
                        "hit" if val_info["hit"] else "computed", val_info["seconds"])
    head = vgg16.head_model(model)
    with context.scope():
        _compile(head, make_optimizer(config["optimizer"], config["learning_rate"], config["momentum"]))
    data = bottleneck.make_rotating_features(train_features, train_split.labels,
                                             batch_size=config["batch_size"], seed=config["seed"])
    _set_phase(context, f"Feature extraction: training the head on cached features "
                        f"({copies} cop{'ies' if copies > 1 else 'y'})", phase_progress=None)
    head.fit(data, epochs=epochs, verbose=0,
             validation_data=(np.asarray(val_features[0], dtype="float32"), val_split.labels),
             callbacks=context.callbacks(config["epochs"], model_to_save=model))
    return {"bottleneck_cache": key, "bottleneck_copies": copies,
            "bottleneck_cache_hit": bool(train_info["hit"] and val_info["hit"]),
            "bottleneck_seconds": round(train_info["seconds"] + val_info["seconds"], 3)}


# --- training: few-shot LeNet transfer ------------------------------------------------------------

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
    if config["strategy"] == SCRATCH:
        return model, copied
    source_layers = {layer.name: layer for layer in source_model.layers}
    transferable = weighted_layers(model)[:-1]  # never the new classifier
    convolutions = [layer for layer in transferable if type(layer).__name__ in CONV_LAYER_TYPES]
    count = len(convolutions) if config["transfer_layers"] is None else config["transfer_layers"]
    if count > len(transferable):
        raise ValueError(f"transfer_layers must be at most {len(transferable)} for this source, "
                         f"received {count}")
    chosen = {layer.name for layer in transferable[:count]}
    freeze = config["strategy"] == FEATURE_EXTRACTION
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


def _wait_for_source(context, source_dir: Path) -> None:
    """Waits while the source run is still queued or running (jobs queued in one go)."""
    from core import jobs, runs

    announced = False
    while True:
        state = jobs.status(source_dir.name, source_dir.parent).get("state")
        if state == runs.COMPLETED:
            return
        if state in runs.TERMINAL_STATES or state is None:
            raise ValueError(f"source run {source_dir.name} ended {state}; it cannot be a source")
        if not announced:
            _set_phase(context, f"Waiting for source run {source_dir.name} ({state})")
            announced = True
        context.raise_if_cancelled()
        time.sleep(SOURCE_WAIT_POLL_SECONDS)


def _train_lenet_transfer(context) -> None:
    import keras

    from core import runs
    from core.models import lenet

    config = context.config
    logger = context.logger
    source_model = None
    if config["source_run"]:
        source_dir = Path(config["source_run"])
        _wait_for_source(context, source_dir)
        from core.models import register_custom_layers

        register_custom_layers()
        source_model = keras.saving.load_model(source_dir / runs.MODEL_FILE, compile=False,
                                               safe_mode=True)
    per_class = config["labels_per_class"]
    _set_phase(context, f"Loading {config['dataset']}"
                        + (f" ({per_class} labels per class)" if per_class else ""))
    train_split, val_split, test_split, class_names = _load_and_seed(context)
    batch_size = config["batch_size"]
    steps_per_epoch = max(1, math.ceil(len(train_split) / batch_size))
    epochs = config["epochs"]
    strategy = config["strategy"]
    with context.scope():
        model, copied = build_lenet_transfer_model(config, len(class_names),
                                                   tuple(train_split.images.shape[1:]), source_model)
    copied_layers = [model.get_layer(name) for name in copied]
    head_epochs = config["head_epochs"] if strategy == FINE_TUNE else 0
    stages = []  # (epochs, copied layers trainable?, learning rate)
    if strategy == FINE_TUNE:
        if head_epochs:
            stages.append((head_epochs, False, config["learning_rate"]))
        stages.append((epochs - head_epochs, True,
                       config["learning_rate"] * config["fine_tune_learning_rate_factor"]))
    else:
        stages.append((epochs, strategy == SCRATCH, config["learning_rate"]))
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
        _set_phase(context, f"{strategy}: {len(copied)} copied layers "
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
    _set_phase(context, "Done")


def train(context) -> None:
    """Trains one transfer run (see the module docstring); ``context`` is a ``RunContext``."""
    if context.config["model"] == LENET_TRANSFER_MODEL:
        _train_lenet_transfer(context)
    else:
        _train_backbone(context)
