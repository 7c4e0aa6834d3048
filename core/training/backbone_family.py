"""The backbone transfer family: VGG16, MobileNetV2 and MobileNet with a new head.

``core.training.families`` maps ``vgg16``, ``mobilenetv2`` and ``mobilenet`` here. Config keys
(CLI option names) and defaults, the study's for VGG16 (seminar slide "VGG16 on Dogs vs Cats"):

* ``strategy``: ``feature-extraction`` (frozen base + new head), ``fine-tune`` (feature
  extraction, then the base's last ``fine_tune_blocks`` blocks unfrozen at
  ``fine_tune_learning_rate``), ``scratch`` (same graph, random weights, all trainable);
* ``weights``: ``imagenet`` (installed with ``python -m core.weights``; downloaded when
  online) | a file path | ``run:<id>`` | ``none`` (scratch always uses ``none``);
* ``dataset`` ``dogs-vs-cats`` (any dataset the registry knows), ``image_size`` 224,
  ``train_size`` 2000, ``valid_size`` 500, ``classes``/``labels_per_class`` (None), ``seed`` 0;
* ``epochs`` (the whole budget, all stages), ``fine_tune_epochs`` (epochs with the top blocks
  unfrozen), ``fine_tune_blocks`` (VGG16 1 = block5; MobileNetV2 3; MobileNet 2);
* ``batch_size``, ``optimizer`` (sgd | adam), ``learning_rate``, ``momentum``,
  ``fine_tune_learning_rate``;
* ``head`` (``flatten``: the study's Flatten -> Dense 256 -> Dropout 0.5; ``pooling``: global
  average pooling first), ``head_units``, ``dropout``; ``alpha`` (MobileNet width, taken from
  the weights when they are pretrained);
* ``augmentation``: a ``core.datasets.preprocess`` spec; the study's rotation + horizontal flip
  for Dogs vs Cats, rotation/shift/zoom (no flip) for the signs; ``{}`` = off;
* ``bottleneck`` (True): train a frozen base's head on cached features; ``bottleneck_copies``
  (K, 5 with augmentation, else 1): augmented copies of the training set precomputed.

Defaults per backbone (``BACKBONE_DEFAULTS``): VGG16 keeps the study's 100 epochs of SGD at
1e-4 (cheap on cached features). The MobileNets use the pooling head with a linear classifier,
Adam at 1e-3 for 30 epochs on cached features and, for fine-tuning, 5 epochs at 1e-5: on 2 CPU
cores the default MobileNetV2 fine-tune of 2,000 images at 224 px stays well within 20 minutes.

Every run stores ``preprocessing`` (for the ``Predictor``), writes ``class_names.json`` and
scores its best ``model.keras`` into ``results.json`` with backbone facts under ``extra`` keys.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from core.models import backbones
from core.training import transfer_support as support
from core.training.config_checks import check_choice, check_int, check_number
from core.training.trainer import DISTRIBUTE_OPTIONS

MODEL_NAMES = backbones.BACKBONE_NAMES
DEFAULT_DATASET = "dogs-vs-cats"
FINE_TUNE_LR_DIVISOR = 10.0
DEFAULT_BOTTLENECK_COPIES = 5
MAX_BOTTLENECK_COPIES = 50

STUDY_DEFAULTS = {
    "strategy": support.FEATURE_EXTRACTION,
    "dataset": DEFAULT_DATASET,
    "weights": "imagenet",
    "image_size": 224,
    "train_size": 2000,
    "valid_size": 500,
    "classes": None,
    "labels_per_class": None,
    "epochs": 100,
    "fine_tune_epochs": None,
    "fine_tune_blocks": None,
    "batch_size": 100,
    "optimizer": "sgd",
    "learning_rate": 1e-4,
    "momentum": 0.9,
    "fine_tune_learning_rate": None,
    "head": "flatten",
    "head_units": 256,
    "dropout": 0.5,
    "alpha": None,
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
_MOBILENET_DEFAULTS = {
    "head": "pooling", "head_units": 0, "dropout": 0.2, "optimizer": "adam",
    "learning_rate": 1e-3, "epochs": 30, "fine_tune_learning_rate": 1e-5,
}
BACKBONE_DEFAULTS = {
    backbones.VGG16: {},
    backbones.MOBILENET_V2: {**_MOBILENET_DEFAULTS, "fine_tune_epochs": 5},
    backbones.MOBILENET: {**_MOBILENET_DEFAULTS, "fine_tune_epochs": 5},
}
AUGMENTATION_DEFAULTS = {
    "dogs-vs-cats": {"rotation_degrees": 20.0, "flip": "horizontal"},
    "gtsrb": {"rotation_degrees": 10.0, "shift": 0.1, "zoom": 0.1},
    "synthetic-signs": {"rotation_degrees": 10.0, "shift": 0.1, "zoom": 0.1},
}
# Datasets not listed (e.g. one built from webcam snapshots): photos, so no vertical flips.
DEFAULT_AUGMENTATION = {"rotation_degrees": 15.0, "flip": "horizontal"}


def defaults_for(backbone: str) -> dict:
    """The complete default config of one backbone (the study's, adjusted per backbone)."""
    return {**copy.deepcopy(STUDY_DEFAULTS), **BACKBONE_DEFAULTS[backbones.check_backbone(backbone)]}


# --- config -------------------------------------------------------------------------------------

def resolve_config(config: dict, runs_root=None) -> dict:
    """Fills every default and validates a backbone transfer config.

    Args:
        config: at least ``{"model": "vgg16"}`` (or ``mobilenetv2`` / ``mobilenet``).
        runs_root: the runs root holding a ``weights="run:<id>"`` source (default
            ``core.paths.runs_dir()``).

    Returns:
        The complete config stored in ``config.json``.

    Raises:
        ValueError: for an unknown model, strategy, dataset or a value out of range.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, received {type(config).__name__}")
    backbone = config.get("model", backbones.VGG16)
    if backbone not in MODEL_NAMES:
        raise ValueError(f"the backbone family trains models {MODEL_NAMES}, received {backbone!r}")
    defaults = defaults_for(backbone)
    unknown = sorted(set(config) - set(defaults) - {"model", "preset"})
    if unknown:
        raise ValueError(f"unknown transfer setting(s) {unknown}; expected some of {sorted(defaults)}")
    if config.get("preset") not in (None, ""):
        raise ValueError(f"preset applies to lenet5, not to {backbone}; received preset={config['preset']!r}")
    resolved = defaults
    resolved.update({key: value for key, value in config.items()
                     if value is not None or key in ("augmentation", "classes", "labels_per_class")})
    resolved.pop("preset", None)
    resolved["model"] = backbone
    _check_settings(resolved, config)
    _resolve_strategy(resolved)
    _resolve_weights(resolved, config, runs_root)
    _resolve_augmentation(resolved)
    from core.datasets import preprocess

    spec = dict(resolved.get("preprocessing") or {})
    spec.update(image_size=resolved["image_size"], color="rgb")
    resolved["preprocessing"] = preprocess.resolve_preprocessing(spec)
    resolved["backbone"] = backbone
    return resolved


def _check_settings(resolved: dict, config: dict) -> None:
    check_choice(resolved, "strategy", support.STRATEGIES)
    support.check_dataset(resolved)
    check_choice(resolved, "optimizer", support.OPTIMIZERS)
    check_choice(resolved, "head", ("flatten", "pooling"))
    resolved["distribute"] = resolved.get("distribute") or "none"
    check_choice(resolved, "distribute", DISTRIBUTE_OPTIONS)
    for key in ("image_size", "epochs", "batch_size"):
        check_int(resolved, key)
    check_int(resolved, "head_units", minimum=0 if resolved["head"] == "pooling" else 1)
    check_int(resolved, "seed", minimum=0)
    for key in ("train_size", "valid_size", "labels_per_class", "fine_tune_epochs", "fine_tune_blocks"):
        check_int(resolved, key, optional=True)
    if resolved["image_size"] < 32:
        raise ValueError(f"image_size must be at least 32 for {resolved['model']}, "
                         f"received {resolved['image_size']}")
    support.check_classes(resolved)
    if resolved["dataset"] != "dogs-vs-cats":
        # Elsewhere train_size/valid_size are optional caps (default: every image).
        for key in ("train_size", "valid_size"):
            if key not in config:
                resolved[key] = None
    check_number(resolved, "learning_rate", 1e-9, 10.0)
    check_number(resolved, "momentum", 0.0, 0.999)
    check_number(resolved, "dropout", 0.0, 0.99)
    if resolved["fine_tune_learning_rate"] is None:
        resolved["fine_tune_learning_rate"] = resolved["learning_rate"] / FINE_TUNE_LR_DIVISOR
    check_number(resolved, "fine_tune_learning_rate", 1e-10, 10.0)
    module = backbones.backbone_module(resolved["model"])
    if resolved["alpha"] is not None and resolved["alpha"] not in module.ALPHAS:
        raise ValueError(f"alpha must be one of {module.ALPHAS} for {resolved['model']}, "
                         f"received {resolved['alpha']!r}")


def _resolve_strategy(resolved: dict) -> None:
    if resolved["strategy"] != support.FINE_TUNE:
        resolved["fine_tune_epochs"] = None
        resolved["fine_tune_blocks"] = None
        return
    module = backbones.backbone_module(resolved["model"])
    if resolved["fine_tune_blocks"] is None:
        resolved["fine_tune_blocks"] = module.DEFAULT_FINE_TUNE_BLOCKS
    if not 1 <= resolved["fine_tune_blocks"] <= module.NUM_BLOCKS:
        raise ValueError(f"fine_tune_blocks must be between 1 and {module.NUM_BLOCKS} for "
                         f"{resolved['model']}, received {resolved['fine_tune_blocks']}")
    if resolved["fine_tune_epochs"] is None:
        resolved["fine_tune_epochs"] = max(1, resolved["epochs"] // 2)
    if not 1 <= resolved["fine_tune_epochs"] <= resolved["epochs"]:
        raise ValueError(f"fine_tune_epochs must be between 1 and epochs ({resolved['epochs']}), "
                         f"received {resolved['fine_tune_epochs']}")


def _resolve_weights(resolved: dict, config: dict, runs_root=None) -> None:
    """Parses ``weights``; records the file, its sha256 and the width it fixes."""
    from core import weights as weights_store

    backbone = resolved["model"]
    requested = resolved.get("weights")
    module = backbones.backbone_module(backbone)
    if resolved["strategy"] == support.SCRATCH:
        if requested not in (None, "none", STUDY_DEFAULTS["weights"]) and "weights" in config:
            resolved["weights_ignored"] = str(requested)
        resolved["weights"] = backbones.NONE
        resolved["bottleneck"] = False
        if resolved["alpha"] is None:
            resolved["alpha"] = module.DEFAULT_ALPHA
        return
    choice = backbones.parse_weights(requested, backbone)
    if not choice.pretrained:
        raise ValueError(f"{resolved['strategy']} needs pretrained weights ('imagenet', a file or "
                         f"'run:<id>'); received weights={requested!r}. Use strategy 'scratch' for "
                         "random weights")
    resolved["weights"] = choice.as_setting()
    found_alpha = module.DEFAULT_ALPHA
    if choice.kind == "run":
        resolved["source_run_dir"] = str(_source_run_dir(choice.run, runs_root))
    elif choice.kind == "imagenet":
        entry = weights_store.installed(backbone)
        if entry:
            resolved["weights_file"] = entry["path"]
            resolved["weights_sha256"] = entry["sha256"]
            resolved["weights_source"] = entry["source"]
            found_alpha = entry["alpha"]
    else:
        identified = weights_store.identify(choice.path, backbone)
        if identified.variant != weights_store.NO_TOP:
            raise ValueError(f"{choice.path.name} holds {backbone} with its ImageNet top; transfer "
                             "needs the no-top file (include_top=False)")
        resolved["weights_sha256"] = weights_store.store.file_sha256(choice.path)
        found_alpha = identified.alpha
    if resolved["alpha"] is not None and found_alpha is not None and resolved["alpha"] != found_alpha:
        raise ValueError(f"alpha {resolved['alpha']} does not fit the weights, which are alpha {found_alpha}")
    resolved["alpha"] = found_alpha if resolved["alpha"] is None else resolved["alpha"]


def _resolve_augmentation(resolved: dict) -> None:
    from core.datasets import preprocess

    augmentation = resolved.get("augmentation")
    if augmentation is None:
        augmentation = AUGMENTATION_DEFAULTS.get(resolved["dataset"], DEFAULT_AUGMENTATION)
    if augmentation is False:
        augmentation = {}
    resolved["augmentation"] = preprocess.resolve_augmentation(augmentation)
    augment = support.augmentation_enabled(resolved["augmentation"])
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


def _source_run_dir(run, runs_root=None) -> Path:
    """Resolves a source run and checks it can serve as a backbone."""
    from core import runs

    run_dir = runs.run_path(run, runs_root)
    if not (run_dir / runs.MODEL_FILE).exists():
        raise ValueError(f"source run {run_dir.name} has no {runs.MODEL_FILE} yet; pick a finished run")
    return run_dir


# --- training -----------------------------------------------------------------------------------

def resolve_weights_file(config: dict, logger=None) -> Path | None:
    """Turns ``config["weights"]`` into a local file (downloading ImageNet weights if needed).

    Returns:
        The file to load, or None for random weights and for ``run:`` weights (copied later).

    Raises:
        WeightsUnavailableError: not installed and not downloadable, or a file that changed.
    """
    from core import weights as weights_store

    choice = backbones.parse_weights(config["weights"], config["model"])
    if choice.kind == "imagenet":
        progress = weights_store.store.log_progress(logger.info) if logger is not None else None
        entry = weights_store.resolve_imagenet(config["model"], progress=progress)
        if logger is not None:
            logger.info("ImageNet weights for %s: %s (from %s, sha256 %s)", config["model"],
                        entry["path"], entry["source"], entry["sha256"][:16])
        return Path(entry["path"])
    if choice.kind == "file":
        expected = config.get("weights_sha256")
        if expected and weights_store.store.file_sha256(choice.path) != expected:
            raise weights_store.WeightsUnavailableError(
                f"{choice.path} changed since the run was configured (sha256 differs from {expected[:16]})")
        return choice.path
    return None


def build_model_for_config(config: dict, num_classes: int, weights_file=None):
    """Builds the transfer model a resolved backbone config describes."""
    from core.datasets import preprocess
    from core.models import transfer

    augmentation = (preprocess.build_augmentation(config["augmentation"])
                    if support.augmentation_enabled(config["augmentation"]) else None)
    return transfer.build_transfer_model(
        num_classes, backbone=config["model"], image_size=config["image_size"],
        weights_file=weights_file, alpha=config.get("alpha"), augmentation=augmentation,
        head=config.get("head", "flatten"), head_units=config["head_units"],
        dropout_rate=config["dropout"], freeze_base=config["strategy"] != support.SCRATCH,
    )


def _optimizer(config: dict, learning_rate: float):
    return support.make_optimizer(config["optimizer"], learning_rate, config["momentum"])


def train(context) -> None:
    """Trains one backbone transfer run; ``context`` is a ``RunContext``."""
    from core.models import transfer

    config = context.config
    logger = context.logger
    strategy = config["strategy"]
    if strategy != support.SCRATCH:  # first, so missing weights fail before the data is loaded
        support.set_phase(context, f"Preparing {config['model']} weights ({config['weights']})")
    weights_file = resolve_weights_file(config, logger)
    support.set_phase(context, f"Loading {config['dataset']} at {config['image_size']} px")
    train_split, val_split, test_split, class_names = support.load_and_seed(context)
    with context.scope():
        model = build_model_for_config(config, len(class_names), weights_file)
    if config.get("source_run_dir"):
        _copy_from_source_run(context, model)
    fingerprint = backbones.weights_fingerprint(transfer.base_layers(model))
    logger.info("Backbone %s, weights %s, fingerprint %s", config["model"], config["weights"],
                fingerprint[:16])
    extra = {"strategy": strategy, "backbone": config["model"], "weights": config["weights"],
             "backbone_fingerprint": fingerprint,
             "weights_file": str(weights_file) if weights_file else None,
             "weights_sha256": config.get("weights_sha256"),
             "weights_source": config.get("weights_source")}
    if strategy == support.SCRATCH:
        _fit_images(context, model, train_split, val_split, config["epochs"], config["learning_rate"],
                    "Training every layer from random weights")
    else:
        stage_one = config["epochs"] - (config["fine_tune_epochs"] or 0)
        if stage_one > 0:
            if config["bottleneck"]:
                extra.update(_fit_head_on_bottleneck(context, model, train_split, val_split,
                                                     fingerprint, stage_one))
            else:
                _fit_images(context, model, train_split, val_split, stage_one, config["learning_rate"],
                            "Feature extraction: frozen base run every epoch")
        if context.cancelled:
            return
        if strategy == support.FINE_TUNE:
            extra["unfrozen_layers"] = _fine_tune(context, model, train_split, val_split)
    if context.cancelled:
        return
    support.set_phase(context, "Scoring the best model")
    context.write_results(context.load_best_model(), test_split, val_split,
                          num_train_images=len(train_split), class_names=class_names, extra=extra)
    support.set_phase(context, "Done")


def _copy_from_source_run(context, model) -> None:
    import keras

    from core import runs
    from core.models import register_custom_layers, transfer

    register_custom_layers()
    source_dir = Path(context.config["source_run_dir"])
    source = keras.saving.load_model(source_dir / runs.MODEL_FILE, compile=False, safe_mode=True)
    copied = transfer.copy_base_weights(source, model)
    context.logger.info("Copied %d layers from run %s", len(copied), source_dir.name)


def _fit_images(context, model, train_split, val_split, epochs: int, learning_rate: float,
                phase: str) -> None:
    """Fits ``model`` on the images themselves (the base runs every step).

    The frozen part of the base runs folded (``folding.fold_for_inference(frozen_only=True)``:
    its batch norms and paddings inside its convolutions, the same function, faster); the
    trainable layers are shared, so fitting that copy trains ``model``, which is what is saved.
    """
    from core.models import folding, transfer

    config = context.config
    with context.scope():
        fit_model = folding.fold_for_inference(model, frozen_only=True)
        support.compile_classifier(fit_model, _optimizer(config, learning_rate))
    if fit_model is not model:
        context.logger.info("Fitting through a copy with %s folded into frozen convolutions",
                            folding.describe_folds(model, fit_model))
    trainable, frozen = transfer.count_params(model)
    support.set_phase(context, f"{phase} ({trainable:,} trainable / {frozen:,} frozen parameters, "
                               f"learning rate {learning_rate:g})")
    fit_model.fit(train_split.images, train_split.labels, batch_size=config["batch_size"],
                  epochs=epochs, shuffle=True, verbose=0,
                  validation_data=(val_split.images, val_split.labels),
                  callbacks=context.callbacks(config["epochs"], epoch_offset=context.epochs_done(),
                                              model_to_save=None if fit_model is model else model))


def _fine_tune(context, model, train_split, val_split) -> list[str]:
    """Stage two: unfreezes the top blocks and trains on images at the fine-tuning rate."""
    from core.models import transfer

    config = context.config
    if context.model_path.exists():
        # Continue from the best feature-extraction epoch, not from the last one.
        model.set_weights(context.load_best_model().get_weights())
    unfrozen = transfer.unfreeze_top_blocks(model, config["model"], config["fine_tune_blocks"])
    blocks = config["fine_tune_blocks"]
    _fit_images(context, model, train_split, val_split, config["fine_tune_epochs"],
                config["fine_tune_learning_rate"],
                f"Fine-tuning the last {blocks} block{'s' if blocks > 1 else ''} "
                f"({len(unfrozen)} layers: {unfrozen[0]} … {unfrozen[-1]})")
    return unfrozen


def _fit_head_on_bottleneck(context, model, train_split, val_split, fingerprint: str,
                            epochs: int) -> dict:
    """Stage one on cached features: the frozen base runs once (K times with augmentation)."""
    from core.models import transfer
    from core.training import bottleneck

    config = context.config
    copies = config["bottleneck_copies"]
    augmentation = None
    if support.augmentation_enabled(config["augmentation"]):
        augmentation = model.get_layer(transfer.AUGMENTATION_NAME)
    # A pooling head caches one vector per image instead of the base's feature maps (49x less
    # for MobileNets at 224 px); pooling has no weights, so the head trains the same.
    pooled = transfer.pools_features(model)
    key = bottleneck.cache_key(
        weights_fingerprint=fingerprint, dataset=config["dataset"], image_size=config["image_size"],
        copies=copies, backbone=config["model"],
        settings={key: config.get(key) for key in ("preprocessing", "augmentation", "train_size",
                                                  "valid_size", "classes", "labels_per_class",
                                                  "seed", "head")} | {"pooled": pooled},
    )
    extractor = transfer.feature_extractor(model, pooled=pooled)

    def progress_for(split_name: str, count: int):
        suffix = f" x {copies} augmented copies" if split_name == "train" and copies > 1 else ""

        def report(done: int, total: int) -> None:
            if done == total or done % 5 == 0:
                support.set_phase(context, f"Computing bottleneck features ({split_name}: {count} "
                                           f"images{suffix}) batch {done}/{total}",
                                  phase_progress=done / max(total, 1))
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
    head = transfer.head_model(model, pooled=pooled)
    with context.scope():
        support.compile_classifier(head, _optimizer(config, config["learning_rate"]))
    data = bottleneck.make_rotating_features(train_features, train_split.labels,
                                             batch_size=config["batch_size"], seed=config["seed"])
    support.set_phase(context, f"Feature extraction: training the head on cached features "
                               f"({copies} cop{'ies' if copies > 1 else 'y'})", phase_progress=None)
    head.fit(data, epochs=epochs, verbose=0,
             validation_data=(np.asarray(val_features[0], dtype="float32"), val_split.labels),
             callbacks=context.callbacks(config["epochs"], model_to_save=model))
    return {"bottleneck_cache": key, "bottleneck_copies": copies,
            "bottleneck_cache_hit": bool(train_info["hit"] and val_info["hit"]),
            "bottleneck_seconds": round(train_info["seconds"] + val_info["seconds"], 3)}
