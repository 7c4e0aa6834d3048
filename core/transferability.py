"""Transferability scores: how well a pretrained source suits a target dataset, before training.

Three published measures, each computed in seconds from one forward pass of the source over the
target images (no fine-tuning), in NumPy only:

* **LogME** (You, Liu, Wang, Long, ICML 2021): the log marginal evidence, per sample, of a
  Bayesian linear model from the source's pooled features to each one-hot label column,
  maximised over the prior precision ``alpha`` and noise precision ``beta`` by the paper's
  fixed-point iteration (Algorithm 1), averaged over classes. Higher is better.
* **LEEP** (Nguyen, Hassner, Seeger, Archambeau, ICML 2020): the average log-likelihood of the
  "expected empirical predictor", which maps the source model's class probabilities to target
  labels through the empirical conditional P(y | z). Always <= 0; higher is better.
* **H-score** (Bao, Li, Huang, Wang, Zheng, ICIP 2019): ``tr(cov(f)^-1 cov(E[f | y]))`` of the
  pooled features f; how much of the features' variance the labels explain. Higher is better.
  ``score`` shrinks cov(f) (Ledoit-Wolf, as Ibrahim et al. ICLR 2022 advise): with more feature
  dimensions than images the paper's inverse is singular and every source scores ``classes - 1``.

``score(source, dataset, metric)`` ties them to the app: ``source`` is ``imagenet:BACKBONE``
(installed ImageNet weights), ``random:BACKBONE`` (a seeded random network: the control) or
``run:RUN_ID`` (a finished run's convolutional base: the output of its last conv/pool layer).
Features go through the bottleneck cache that training uses (``core.training.bottleneck``'s
``cache_key`` and ``cached_features``, one folder per source, dataset and sample), pooled and kept
in float32; scores are cached on disk under ``<data root>/cache/transferability/``, keyed by the
source's fingerprint, dataset, metric, max_images, seed, image size and classes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

LOGME = "logme"
LEEP = "leep"
HSCORE = "hscore"
METRICS = (LOGME, LEEP, HSCORE)
METRIC_TITLES = {LOGME: "LogME", LEEP: "LEEP", HSCORE: "H-score"}

IMAGENET_PREFIX = "imagenet:"
RANDOM_PREFIX = "random:"
RUN_PREFIX = "run:"
BACKBONES = ("mobilenetv2", "mobilenet", "vgg16")  # = core.models.backbones.BACKBONE_NAMES
IMAGENET_IMAGE_SIZE = 224
# Input size of backbone sources when none is given: the photos at ImageNet's 224 px; the 32 px
# signs upsampled to 96 px (enough for the MobileNets' 3 x 3 last map, 5x cheaper than 224).
DEFAULT_IMAGE_SIZES = {"dogs-vs-cats": 224, "gtsrb": 96, "synthetic-signs": 96}
DEFAULT_MAX_IMAGES = 400
MIN_IMAGES = 4
FLATTEN_MAX_VALUES = 2048  # feature maps up to this many values are flattened, larger ones averaged
PROBABILITY_FLOOR = 1e-12
FORWARD_BATCH_SIZE = 32

LOGME_MAX_ITERATIONS = 100
LOGME_TOLERANCE = 1e-3  # relative change of alpha / beta that stops the fixed-point iteration
PRECISION_MIN, PRECISION_MAX = 1e-10, 1e10  # bounds of alpha and beta

SCORE_CACHE_FOLDER = ("cache", "transferability")
FEATURES_SPLIT = "train"
PROBABILITIES_SPLIT = "train-probabilities"

ProgressCallback = Callable[[float, str], None]


# --- the three measures (NumPy only) --------------------------------------------------------------

def _check_features_labels(features, labels) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D array (samples, dims), received shape {features.shape}")
    if labels.ndim != 1 or len(labels) != len(features):
        raise ValueError(f"labels must be 1-D with one label per sample ({len(features)}), "
                         f"received shape {labels.shape}")
    if len(labels) < 2:
        raise ValueError(f"need at least 2 samples, received {len(labels)}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"labels must be non-negative ints, received dtype {labels.dtype}")
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or infinite values")
    return features, labels.astype(np.int64)


def logme_evidence(features, target, alpha: float, beta: float) -> float:
    """The log evidence ``log p(y | F, alpha, beta)`` of the paper's Bayesian linear model (eq. 2).

    ``w ~ N(0, alpha^-1 I)``, ``y | F, w ~ N(F w, beta^-1 I)``; the closed form is

        n/2 log beta + D/2 log alpha - n/2 log 2pi - beta/2 ||F m - y||^2 - alpha/2 m^T m
        - 1/2 log det(alpha I + beta F^T F),   m = beta A^-1 F^T y,  A = alpha I + beta F^T F.

    Args:
        features: (n, D) array.
        target: (n,) real targets (one label column).
        alpha: prior precision of the weights (> 0).
        beta: precision of the noise (> 0).

    Returns:
        The log evidence (not divided by n).
    """
    features = np.asarray(features, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"alpha and beta must be positive, received alpha={alpha}, beta={beta}")
    count, dims = features.shape
    precision = alpha * np.eye(dims) + beta * features.T @ features
    mean = beta * np.linalg.solve(precision, features.T @ target)
    residual = float(np.sum((features @ mean - target) ** 2))
    _, log_det = np.linalg.slogdet(precision)
    return float(count / 2 * math.log(beta) + dims / 2 * math.log(alpha)
                 - count / 2 * math.log(2 * math.pi) - beta / 2 * residual
                 - alpha / 2 * float(mean @ mean) - log_det / 2)


def _clip_precision(value: float) -> float:
    return float(min(max(value, PRECISION_MIN), PRECISION_MAX))


def _logme_column(singular_squared: np.ndarray, projected: np.ndarray, target_norm: float,
                  count: int, dims: int) -> tuple[float, float, float]:
    """Algorithm 1 of You et al. for one target column, in the SVD basis of F.

    Returns:
        ``(evidence / n, alpha, beta)`` at the fixed point.
    """
    alpha, beta = 1.0, 1.0
    outside = max(target_norm - float(projected @ projected), 0.0)  # ||y||^2 outside F's span
    for _ in range(LOGME_MAX_ITERATIONS):
        gamma = float(np.sum(beta * singular_squared / (alpha + beta * singular_squared)))
        shrink = beta / (alpha + beta * singular_squared)
        mean_squared = float(np.sum(singular_squared * (shrink * projected) ** 2))  # m^T m
        residual = float(np.sum((alpha / (alpha + beta * singular_squared) * projected) ** 2)) + outside
        # Degenerate features (all zero, or y in F's span) send alpha or beta to infinity;
        # clipping keeps the evidence finite and equal to its limit up to rounding.
        new_alpha = _clip_precision(gamma / mean_squared if mean_squared > 0 else PRECISION_MAX)
        new_beta = _clip_precision((count - gamma) / residual if residual > 0 else PRECISION_MAX)
        converged = (abs(new_alpha - alpha) / alpha < LOGME_TOLERANCE
                     and abs(new_beta - beta) / beta < LOGME_TOLERANCE)
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    shrink = beta / (alpha + beta * singular_squared)
    mean_squared = float(np.sum(singular_squared * (shrink * projected) ** 2))
    residual = float(np.sum((alpha / (alpha + beta * singular_squared) * projected) ** 2)) + outside
    log_det = float(np.sum(np.log(alpha + beta * singular_squared))) + (dims - len(singular_squared)) * math.log(alpha)
    evidence = (count / 2 * math.log(beta) + dims / 2 * math.log(alpha)
                - count / 2 * math.log(2 * math.pi) - beta / 2 * residual
                - alpha / 2 * mean_squared - log_det / 2)
    return evidence / count, alpha, beta


def logme(features, labels) -> float:
    """LogME (You et al., ICML 2021): mean over classes of the maximised evidence per sample.

    Each class k gives one target column ``y = 1[label == k]``; ``alpha`` and ``beta`` are
    found by the paper's fixed-point iteration, using one SVD of the features for every class.

    Args:
        features: (n, D) pooled features of the target images.
        labels: (n,) integer target labels.

    Returns:
        LogME, a float (typically between -2 and 2; higher = more transferable).
    """
    features, labels = _check_features_labels(features, labels)
    count, dims = features.shape
    scale = math.sqrt(float(np.mean(features ** 2)))
    if scale > 0:
        # The maximised evidence is scale-free (F -> cF is absorbed by alpha -> c^2 alpha); one
        # global rescaling keeps alpha inside its bounds for a random network's ~1e-11 features.
        features = features / scale
    left, singular, _ = np.linalg.svd(features, full_matrices=False)
    singular_squared = singular ** 2
    scores = []
    for label in np.unique(labels):
        target = (labels == label).astype(np.float64)
        projected = left.T @ target
        evidence, _, _ = _logme_column(singular_squared, projected, float(target @ target), count, dims)
        scores.append(evidence)
    return float(np.mean(scores))


def logme_fit(features, target) -> tuple[float, float, float]:
    """The fixed point of one column: ``(evidence per sample, alpha, beta)`` (for tests, charts)."""
    features = np.asarray(features, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    left, singular, _ = np.linalg.svd(features, full_matrices=False)
    return _logme_column(singular ** 2, left.T @ target, float(target @ target), *features.shape)


def leep(probabilities, labels) -> float:
    """LEEP (Nguyen et al., ICML 2020) from the source model's class probabilities.

    ``P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z``, ``P(y | z) = P(y, z) / P(z)`` and
    ``LEEP = 1/n sum_i log(sum_z P(y_i | z) theta(x_i)_z)``.

    Args:
        probabilities: (n, Z) source-class probabilities theta(x_i) (rows sum to 1).
        labels: (n,) integer target labels.

    Returns:
        LEEP, a float <= 0 (0 when the source's classes determine the target's labels).
    """
    probabilities, labels = _check_features_labels(probabilities, labels)
    if probabilities.min() < 0 or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probabilities must be non-negative rows that sum to 1 (a softmax output)")
    count = len(labels)
    classes = np.unique(labels)
    one_hot = (labels[:, None] == classes[None, :]).astype(np.float64)  # (n, Y)
    joint = one_hot.T @ probabilities / count  # (Y, Z)
    marginal = joint.sum(axis=0, keepdims=True)  # (1, Z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    expected = probabilities @ conditional.T  # (n, Y): P(y | x) of the expected empirical predictor
    index = np.searchsorted(classes, labels)
    return float(np.mean(np.log(np.maximum(expected[np.arange(count), index], PROBABILITY_FLOOR))))


def negative_conditional_entropy(source_labels, labels) -> float:
    """NCE (Tran et al., ICCV 2019): ``-H(Y | Z)`` from hard source labels z (for the LEEP check)."""
    source_labels = np.asarray(source_labels, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    total = 0.0
    for source in np.unique(source_labels):
        chosen = labels[source_labels == source]
        share = len(chosen) / len(labels)
        _, counts = np.unique(chosen, return_counts=True)
        conditional = counts / counts.sum()
        total += share * float(np.sum(conditional * np.log(conditional)))
    return total


def ledoit_wolf_covariance(centred: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit and Wolf's (2004) shrunk covariance of centred samples (n, D) and its intensity.

    Returns:
        ``(covariance, alpha)`` with covariance ``alpha * mean_variance * I + (1 - alpha) * S``.
    """
    count, dims = centred.shape
    sample = centred.T @ centred / count
    mean_variance = float(np.trace(sample)) / dims
    distance = float(np.sum((sample - mean_variance * np.eye(dims)) ** 2)) / dims
    if distance <= 0:
        return sample, 0.0
    squared_norms = np.sum(centred ** 2, axis=1)
    spread = (float(np.sum(squared_norms ** 2)) - 2 * float(np.sum((centred @ sample) * centred))
              + count * float(np.sum(sample ** 2))) / (count ** 2 * dims)
    shrinkage = min(spread, distance) / distance
    return shrinkage * mean_variance * np.eye(dims) + (1 - shrinkage) * sample, shrinkage


def hscore(features, labels, *, shrinkage: bool = False) -> float:
    """H-score (Bao et al., ICIP 2019): ``tr(cov(f)^-1 cov(E[f | y]))``.

    With as many feature dimensions as samples, cov(f) is singular and the paper's H-score
    saturates at ``classes - 1`` for every source. ``shrinkage=True`` is the fix Ibrahim et al.
    (ICLR 2022) propose: cov(f) becomes its Ledoit-Wolf estimate with intensity a, and
    cov(E[f | y]) is scaled by (1 - a) alike; ``score`` uses it.

    Args:
        features: (n, D) pooled features.
        labels: (n,) integer target labels.
        shrinkage: shrink cov(f) (Ledoit-Wolf) instead of the pseudo-inverse of the sample one.

    Returns:
        The H-score, between 0 and min(D, classes - 1); higher = more transferable.
    """
    features, labels = _check_features_labels(features, labels)
    centred = features - features.mean(axis=0, keepdims=True)
    if shrinkage:
        covariance, intensity = ledoit_wolf_covariance(centred)
    else:
        covariance, intensity = centred.T @ centred / len(features), 0.0
    class_means = np.zeros_like(centred)
    for label in np.unique(labels):
        chosen = labels == label
        class_means[chosen] = centred[chosen].mean(axis=0)
    between = (1 - intensity) * class_means.T @ class_means / len(features)
    return float(np.trace(np.linalg.pinv(covariance, rcond=1e-10, hermitian=True) @ between))


def compute_metric(metric: str, *, features=None, probabilities=None, labels) -> float:
    """Dispatches to ``logme``, ``leep`` or ``hscore`` (LEEP takes probabilities, others features)."""
    check_metric(metric)
    if metric == LEEP:
        return leep(probabilities, labels)
    if metric == LOGME:
        return logme(features, labels)
    return hscore(features, labels, shrinkage=True)


def check_metric(metric: str) -> str:
    """Validates a metric name and returns it."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, received {metric!r}")
    return metric


def pool_features(features: np.ndarray) -> np.ndarray:
    """(N, h, w, c) maps -> (N, D) vectors: flattened when small, else global-average-pooled."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim == 2:
        return features
    if features.ndim != 4:
        raise ValueError(f"features must be (N, D) or (N, h, w, c), received shape {features.shape}")
    if int(np.prod(features.shape[1:])) <= FLATTEN_MAX_VALUES:
        return features.reshape(len(features), -1)
    return features.mean(axis=(1, 2))


# --- sources --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """A parsed ``source`` string.

    Attributes:
        kind: ``"imagenet"``, ``"random"`` or ``"run"``.
        name: the backbone (imagenet, random) or the run id / folder (run).
    """

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


def parse_source(source: str) -> Source:
    """Parses ``imagenet:BACKBONE``, ``random:BACKBONE`` or ``run:RUN_ID``.

    Raises:
        ValueError: for any other text, naming what was received and what is expected.
    """
    text = str(source).strip()
    for prefix in (IMAGENET_PREFIX, RANDOM_PREFIX):
        if text.startswith(prefix):
            backbone = text[len(prefix):].strip().lower()
            if backbone not in BACKBONES:
                raise ValueError(f"source {text!r} names backbone {backbone!r}; expected one of "
                                 f"{BACKBONES}")
            return Source(prefix[:-1], backbone)
    if text.startswith(RUN_PREFIX) and text[len(RUN_PREFIX):].strip():
        return Source("run", text[len(RUN_PREFIX):].strip())
    raise ValueError(f"source must be 'imagenet:BACKBONE', 'random:BACKBONE' (BACKBONE in "
                     f"{BACKBONES}) or 'run:RUN_ID', received {source!r}")


def source_of_run(config: dict) -> str | None:
    """The source a run's starting weights come from, as a ``score`` source string.

    Backbone runs: ``imagenet:<model>`` (ImageNet, the installed ImageNet file given as a path,
    or the scratch twin's default), ``run:<id>`` for ``weights="run:..."``, None for any other
    weights file (e.g. the validation's saved random networks). Few-shot LeNet targets: ``run:<source run>``.
    None for a LeNet trained from scratch and for few-shot source runs.
    """
    model = str(config.get("model", ""))
    if model == "lenet5-transfer":
        source_run = config.get("source_run")
        if config.get("role") == "source" or not source_run:
            return None
        return f"{RUN_PREFIX}{Path(str(source_run)).name}"
    if model in BACKBONES:
        weights = str(config.get("weights_ignored") or config.get("weights") or "")
        if weights.startswith(RUN_PREFIX):
            return f"{RUN_PREFIX}{Path(weights[len(RUN_PREFIX):]).name}"
        if weights.lower() not in ("", "imagenet", "none") and not config.get("weights_ignored"):
            # A weights file: ImageNet only when it is the installed ImageNet file (same SHA-256).
            entry = imagenet_weights(model)
            if entry is None or entry.get("sha256") != config.get("weights_sha256"):
                return None
        return f"{IMAGENET_PREFIX}{model}"
    return None


def imagenet_weights(backbone: str, include_top: bool = False) -> dict | None:
    """The installed ImageNet weights entry (``path``, ``alpha``, ``sha256``...) of a backbone
    (``python -m core.weights get``), no-top or with-top, or None."""
    from core import weights

    return weights.installed(backbone, weights.TOP if include_top else weights.NO_TOP)


def imagenet_weights_file(backbone: str, include_top: bool = False) -> Path | None:
    """The installed ImageNet weights file of a backbone (no-top or with-top), or None."""
    entry = imagenet_weights(backbone, include_top)
    return Path(entry["path"]) if entry else None


def _weights_hint(backbone: str, include_top: bool) -> str:
    from core import weights

    variant = "with-top (1,000-class)" if include_top else "no-top"
    return f"no {variant} ImageNet weights for {backbone} are installed. {weights.offline_hint(backbone)}"


def available_sources(runs_root=None) -> list[str]:
    """Sources that can be scored now: installed ImageNet backbones, random controls, finished runs."""
    from core import runs

    sources = [f"{IMAGENET_PREFIX}{backbone}" for backbone in BACKBONES
               if imagenet_weights_file(backbone) is not None or imagenet_weights_file(backbone, True)]
    sources += [f"{RANDOM_PREFIX}{backbone}" for backbone in BACKBONES[:2]]
    for summary in runs.list_runs(runs_root):
        if not summary.broken and summary.state == runs.COMPLETED and (summary.path / runs.MODEL_FILE).exists():
            sources.append(f"{RUN_PREFIX}{summary.run_id}")
    return sources


@dataclass
class SourceModels:
    """What one source gives: images -> feature maps, and (when known) images -> probabilities.

    Attributes:
        extractor: Keras model from uint8-valued float images to feature maps.
        classifier: Keras model to source-class probabilities, or None (see ``missing_classifier``).
        image_size: side of the square input; ``channels`` its channels.
        preprocessing: a ``core.datasets.preprocess`` spec applied to the images first.
        fingerprint: identity of the weights (part of every cache key).
        missing_classifier: why there is no classifier (for LEEP's error message).
    """

    extractor: object
    classifier: object
    image_size: int
    channels: int
    preprocessing: dict
    fingerprint: str
    label: str
    missing_classifier: str = ""


def source_fingerprint(source: str) -> str:
    """A cheap identity of a source's weights (file hashes; no model is built).

    ``imagenet:`` hashes the installed files, ``run:`` the run's ``model.keras``, ``random:`` is
    identified by its backbone (the seed is part of every cache key anyway).
    """
    parsed = parse_source(source)
    digest = hashlib.sha256(str(parsed).encode())
    if parsed.kind == "imagenet":
        for include_top in (False, True):
            entry = imagenet_weights(parsed.name, include_top)
            if entry is not None:  # the install recorded its SHA-256
                digest.update(str(entry.get("sha256") or _file_sha256(Path(entry["path"]))).encode())
    elif parsed.kind == "run":
        from core import runs

        run_dir = runs.run_path(parsed.name)
        digest.update(_file_sha256(run_dir / runs.MODEL_FILE).encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_source(source: str, *, image_size: int | None = None, need_classifier: bool = False,
                seed: int = 0) -> SourceModels:
    """Builds the models a source scores with.

    Args:
        source: ``imagenet:BACKBONE``, ``random:BACKBONE`` or ``run:RUN_ID``.
        image_size: input size for backbones (default 224; VGG16's with-top model needs 224);
            a run always uses its own size.
        need_classifier: also build the source-class classifier (LEEP).
        seed: the random control's seed.

    Returns:
        A ``SourceModels``.

    Raises:
        ValueError: a bad source, weights that are not installed, an unfinished run.
    """
    import keras

    from core import weights
    from core.models import backbones

    parsed = parse_source(source)
    if parsed.kind == "run":
        return _load_run_source(parsed.name)
    module = backbones.backbone_module(parsed.name)
    size = int(image_size or IMAGENET_IMAGE_SIZE)
    if size < 32:
        raise ValueError(f"image_size must be at least 32 for {parsed.name}, received {size}")
    spec = {"image_size": size, "color": "rgb"}
    if parsed.kind == "random":
        keras.utils.set_random_seed(int(seed))
    notop = imagenet_weights(parsed.name) if parsed.kind == "imagenet" else None
    top = imagenet_weights(parsed.name, True) if parsed.kind == "imagenet" else None
    if parsed.kind == "imagenet" and notop is None and top is None:
        raise ValueError(f"source {source!r}: {_weights_hint(parsed.name, False)}")
    classifier = None
    missing = ""
    use_top = (parsed.kind == "random" or top is not None) and need_classifier
    if use_top and parsed.name == backbones.VGG16 and size != IMAGENET_IMAGE_SIZE:
        use_top = False  # VGG16's top flattens a 7 x 7 map: 224 px only (the MobileNets pool)
        missing = (f"LEEP needs VGG16's 1,000-class top, which takes {IMAGENET_IMAGE_SIZE} px images; "
                   f"received image_size={size}")
    elif need_classifier and not use_top:
        missing = (f"LEEP needs source-class probabilities but only no-top weights are installed "
                   f"for {parsed.name}: {_weights_hint(parsed.name, True)}")
    entry = top if use_top else notop
    inputs = keras.Input((size, size, 3), name="image")
    tensor = module.preprocessing_layer()(inputs)
    try:
        network = module.build_base(size, entry["path"] if entry else None, include_top=use_top,
                                    alpha=entry.get("alpha") if entry else module.DEFAULT_ALPHA)
    except (ValueError, OSError, KeyError) as error:
        raise weights.WeightsUnavailableError(
            f"source {source!r}: the installed weights do not load into {parsed.name}: {error}") from error
    if use_top:
        features = network.get_layer(module.FEATURE_LAYER).output
        inner = keras.Model(network.inputs, [features, network.outputs[0]])
        feature_maps, probabilities = inner(tensor)
        extractor = keras.Model(inputs, feature_maps, name=f"{parsed.name}_features")
        classifier = keras.Model(inputs, probabilities, name=f"{parsed.name}_classifier")
    else:
        extractor = keras.Model(inputs, network(tensor), name=f"{parsed.name}_features")
    fingerprint = backbones.weights_fingerprint([network])
    return SourceModels(extractor, classifier, size, 3, spec, fingerprint, str(parsed), missing)


def _load_run_source(run: str) -> SourceModels:
    import keras

    from core.models import backbones as backbone_module
    from core.predictor import Predictor, PredictorError

    try:
        predictor = Predictor.from_run(run, precision="float32")
    except PredictorError as error:
        raise ValueError(f"source 'run:{run}': {error}") from error
    model = predictor.model
    last_map = None
    for layer in model.layers:
        output = getattr(layer, "output", None)
        if output is not None and len(output.shape) == 4 and not isinstance(layer, keras.layers.InputLayer):
            last_map = layer
    if last_map is None:
        raise ValueError(f"source 'run:{run}': its model has no convolutional layer to take features from")
    extractor = keras.Model(model.inputs, last_map.output, name="run_features")
    fingerprint = backbone_module.weights_fingerprint(model.layers)
    return SourceModels(extractor, model, predictor.image_size, predictor.channels,
                        dict(predictor.preprocessing), fingerprint, f"run:{predictor.run_dir.name}")


# --- scoring --------------------------------------------------------------------------------------

def _check_max_images(max_images) -> int:
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < MIN_IMAGES:
        raise ValueError(f"max_images must be an int >= {MIN_IMAGES}, received {max_images!r}")
    return max_images


def score_cache_path(source: str, dataset: str, metric: str, max_images: int, seed: int,
                     image_size: int | None = None, classes=None) -> Path:
    """Where a score is cached: one JSON file per (source fingerprint, dataset, metric, ...)."""
    from core import paths

    payload = json.dumps({"source": source_fingerprint(source), "dataset": dataset, "metric": metric,
                          "max_images": int(max_images), "seed": int(seed),
                          "image_size": image_size, "classes": classes}, sort_keys=True)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:20]
    return paths.data_dir().joinpath(*SCORE_CACHE_FOLDER) / f"{metric}-{dataset}-{digest}.json"


def load_target(dataset: str, image_size: int, *, max_images: int, seed: int = 0, classes=None):
    """The target images: a seeded, stratified sample of the training split (``train_size``)."""
    from core import datasets

    return datasets.load(dataset, "train", image_size, train_size=max_images, seed=seed,
                         classes=list(classes) if classes is not None else None)


def source_outputs(source: str, dataset: str, *, metric: str = LOGME, max_images: int = DEFAULT_MAX_IMAGES,
                   seed: int = 0, image_size: int | None = None, classes=None,
                   progress: ProgressCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Runs a source over the target images through the bottleneck cache.

    Returns:
        ``(values, labels)``: pooled features (N, D) for LogME/H-score, or the source's class
        probabilities (N, Z) for LEEP.
    """
    from core.datasets import preprocess
    from core.training import bottleneck

    check_metric(metric)
    report = progress or (lambda fraction, text: None)
    report(0.0, f"loading {source}")
    models = load_source(source, image_size=image_size or DEFAULT_IMAGE_SIZES.get(dataset),
                         need_classifier=metric == LEEP, seed=seed)
    if metric == LEEP and models.classifier is None:
        raise ValueError(f"source {source!r}: {models.missing_classifier}")
    report(0.1, f"loading {dataset}")
    target = load_target(dataset, models.image_size, max_images=max_images, seed=seed, classes=classes)
    if len(target.labels) < MIN_IMAGES:
        raise ValueError(f"{dataset} gave {len(target.labels)} images; at least {MIN_IMAGES} are needed")
    images = np.asarray(preprocess.apply_preprocessing(target.images, models.preprocessing))
    if images.ndim == 3:
        images = images[..., None]
    network = models.classifier if metric == LEEP else models.extractor
    key = bottleneck.cache_key(
        weights_fingerprint=models.fingerprint, dataset=dataset, image_size=models.image_size,
        copies=1, backbone=models.label.replace(":", "-").replace("/", "-")[:40],
        settings={"purpose": "transferability", "preprocessing": models.preprocessing,
                  "train_size": max_images, "seed": seed, "classes": classes,
                  "output": "probabilities" if metric == LEEP else "features"})

    def forward_progress(done: int, total: int) -> None:
        report(0.15 + 0.8 * done / max(total, 1), f"{source}: batch {done}/{total}")

    values, _ = bottleneck.cached_features(
        key, PROBABILITIES_SPLIT if metric == LEEP else FEATURES_SPLIT,
        lambda: _forward(network, images, forward_progress, pool=metric != LEEP), target.labels)
    return np.asarray(values[0], dtype=np.float32), np.asarray(target.labels, dtype=np.int64)


def bottleneck_cache_folders(dataset: str) -> list[Path]:
    """The bottleneck-cache folders scoring made for ``dataset`` (not training's)."""
    from core.training import bottleneck

    root = bottleneck.cache_root()
    prefixes = tuple(f"{kind}-" for kind in ("imagenet", "random", "run"))
    return sorted(folder for folder in root.glob(f"*-{dataset}-*px-k1-*") if folder.name.startswith(prefixes))


def _forward(network, images: np.ndarray, progress, *, pool: bool) -> np.ndarray:
    """Runs ``network`` batch by batch in float32; returns (1, N, D) like the bottleneck cache.

    Features are pooled per batch (``pool_features``) and kept in float32: a random network's
    activations can be ~1e-11, which the training cache's float16 would round to zero.
    Probabilities of a one-unit sigmoid output become two columns.
    """
    outputs = []
    total = math.ceil(len(images) / FORWARD_BATCH_SIZE)
    for index, start in enumerate(range(0, len(images), FORWARD_BATCH_SIZE)):
        batch = np.asarray(images[start:start + FORWARD_BATCH_SIZE], dtype="float32")
        output = np.asarray(network.predict_on_batch(batch), dtype="float32")
        outputs.append(pool_features(output) if pool else output)
        progress(index + 1, total)
    values = np.concatenate(outputs)
    if not pool and values.shape[-1] == 1:
        values = np.concatenate([1.0 - values, values], axis=-1)
    return values[None]


def score(source: str, dataset: str, metric: str = LOGME, max_images: int = DEFAULT_MAX_IMAGES,
          seed: int = 0, *, image_size: int | None = None, classes=None, use_cache: bool = True,
          progress: ProgressCallback | None = None) -> float:
    """Scores how transferable ``source`` is to ``dataset``.

    Args:
        source: ``imagenet:mobilenetv2|mobilenet|vgg16``, ``random:BACKBONE`` or ``run:RUN_ID``.
        dataset: ``dogs-vs-cats``, ``gtsrb`` or ``synthetic-signs``.
        metric: ``logme``, ``leep`` or ``hscore``.
        max_images: target training images used (seeded stratified sample).
        seed: seed of the sample and of the random control.
        image_size: input size for backbone sources (default ``DEFAULT_IMAGE_SIZES[dataset]``:
            224 for the photos, 96 for the signs); runs use their own.
        classes: keep only these original class ids of the dataset.
        use_cache: read and write the on-disk score cache.
        progress: ``progress(fraction, text)`` while computing.

    Returns:
        The score (higher = more transferable).
    """
    return score_details(source, dataset, metric, max_images, seed, image_size=image_size,
                         classes=classes, use_cache=use_cache, progress=progress)["score"]


def score_details(source: str, dataset: str, metric: str = LOGME, max_images: int = DEFAULT_MAX_IMAGES,
                  seed: int = 0, *, image_size: int | None = None, classes=None, use_cache: bool = True,
                  progress: ProgressCallback | None = None) -> dict:
    """``score`` with its context: ``score``, ``seconds``, ``cached``, ``num_images``, ``source``..."""
    from core.datasets import registry

    check_metric(metric)
    parse_source(source)
    _check_max_images(max_images)
    if dataset not in registry.DATASET_NAMES:
        raise ValueError(f"dataset must be one of {registry.DATASET_NAMES}, received {dataset!r}")
    classes = [int(value) for value in classes] if classes is not None else None
    started = time.perf_counter()
    cache_path = score_cache_path(source, dataset, metric, max_images, seed, image_size, classes)
    if use_cache and cache_path.is_file():
        try:
            cached = json.loads(cache_path.read_text())
            if isinstance(cached.get("score"), (int, float)):
                return {**cached, "cached": True, "seconds": time.perf_counter() - started}
        except (OSError, ValueError):
            pass  # unreadable cache entry: recompute
    values, labels = source_outputs(source, dataset, metric=metric, max_images=max_images, seed=seed,
                                    image_size=image_size, classes=classes, progress=progress)
    value = compute_metric(metric, features=values, probabilities=values, labels=labels)
    fractions = np.bincount(labels) / len(labels)
    details = {"score": value,
               "normalised": normalised_score(metric, value, fractions[fractions > 0]), "source": source, "dataset": dataset, "metric": metric,
               "max_images": max_images, "seed": seed, "image_size": image_size, "classes": classes,
               "num_images": int(len(labels)), "dims": int(values.shape[1]),
               "class_fractions": fractions[fractions > 0].tolist(),
               "seconds": time.perf_counter() - started, "cached": False,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if use_cache:
        from core.files import write_json_atomic

        write_json_atomic(cache_path, details)
    if progress is not None:
        progress(1.0, f"{source}: {METRIC_TITLES[metric]} {value:.4f}")
    return details


def rank_sources(sources, dataset: str, metric: str = LOGME, max_images: int = DEFAULT_MAX_IMAGES,
                 seed: int = 0, *, image_size: int | None = None, classes=None,
                 progress: ProgressCallback | None = None) -> list[dict]:
    """Scores several sources; best first. A source that cannot be scored gets ``error``.

    Returns:
        ``score_details`` dicts (``score`` None and ``error`` set for failures), best first.
    """
    sources = list(sources)
    if not sources:
        raise ValueError("sources must name at least one source, received none")
    rows = []
    for index, source in enumerate(sources):
        def report(fraction: float, text: str, index=index) -> None:
            if progress is not None:
                progress((index + fraction) / len(sources), text)

        started = time.perf_counter()
        try:
            rows.append(score_details(source, dataset, metric, max_images, seed, image_size=image_size,
                                      classes=classes, progress=report))
        except (ValueError, RuntimeError, OSError) as error:
            rows.append({"source": source, "dataset": dataset, "metric": metric, "score": None,
                         "seconds": time.perf_counter() - started, "error": str(error)})
    return sorted(rows, key=lambda row: (row["score"] is None, -(row["score"] or 0.0)))


def chance_score(metric: str, class_fractions) -> float:
    """What a source that knows nothing scores, from the target's class shares p_k.

    LogME: the evidence with all-zero features (``m = 0``, ``beta = 1 / p_k``), averaged over
    classes: ``mean_k(1/2 log(1/p_k) - 1/2 log 2pi - 1/2)``. LEEP: the log-likelihood of
    predicting the class prior, ``sum_k p_k log p_k``. H-score: 0.
    """
    check_metric(metric)
    fractions = np.asarray(class_fractions, dtype=np.float64)
    if fractions.ndim != 1 or len(fractions) < 2 or np.any(fractions <= 0) or not math.isclose(fractions.sum(), 1.0, abs_tol=1e-6):
        raise ValueError(f"class_fractions must be 2 or more positive shares summing to 1, received {class_fractions!r}")
    if metric == LOGME:
        return float(np.mean(0.5 * np.log(1 / fractions) - 0.5 * math.log(2 * math.pi) - 0.5))
    if metric == LEEP:
        return float(np.sum(fractions * np.log(fractions)))
    return 0.0


def normalised_score(metric: str, value: float, class_fractions) -> float:
    """Maps a score to [0, 1]: 0 = no better than a source that knows nothing, 1 = perfect.

    * LogME: ``1 - exp(chance - LogME)`` (LogME has no upper bound; each nat of evidence per
      image above chance closes 63 % of the remaining gap);
    * LEEP: ``(exp(LEEP) - exp(chance)) / (1 - exp(chance))``, the geometric-mean probability
      of the right label, rescaled between the class prior and certainty;
    * H-score: ``H / (classes - 1)``, its upper bound.

    Returns:
        A float in [0, 1].
    """
    chance = chance_score(metric, class_fractions)
    if metric == LOGME:
        normalised = 1.0 - math.exp(min(chance - float(value), 50.0))
    elif metric == LEEP:
        normalised = (math.exp(float(value)) - math.exp(chance)) / (1.0 - math.exp(chance))
    else:
        normalised = float(value) / (len(class_fractions) - 1)
    return float(min(max(normalised, 0.0), 1.0))


def cached_score(source: str, dataset: str, metric: str = LOGME, max_images: int = DEFAULT_MAX_IMAGES,
                 seed: int = 0, *, image_size: int | None = None, classes=None) -> dict | None:
    """The cached ``score_details`` of these settings, or None (never computes; for charts)."""
    try:
        path = score_cache_path(source, dataset, metric, max_images, seed, image_size,
                                [int(value) for value in classes] if classes is not None else None)
        cached = json.loads(path.read_text())
    except (ValueError, OSError, KeyError):
        return None
    return cached if isinstance(cached.get("score"), (int, float)) else None


def spearman(first, second) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when a side is constant."""
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 1 or len(first) < 2:
        raise ValueError(f"need two 1-D sequences of equal length >= 2, received {first.shape} and {second.shape}")

    def ranks(values):
        order = np.argsort(values, kind="mergesort")
        result = np.empty(len(values))
        result[order] = np.arange(1, len(values) + 1)
        for value in np.unique(values):
            tied = values == value
            result[tied] = result[tied].mean()
        return result

    rank_first, rank_second = ranks(first), ranks(second)
    if rank_first.std() == 0 or rank_second.std() == 0:
        return float("nan")
    return float(np.corrcoef(rank_first, rank_second)[0, 1])


def format_rows(rows: list[dict]) -> list[str]:
    """The CLI's lines: ``source<TAB>metric<TAB>score<TAB>seconds`` (score ``error: ...`` on failure)."""
    lines = []
    for row in rows:
        value = f"{row['score']:.6f}" if row.get("score") is not None else f"error: {row.get('error')}"
        lines.append(f"{row['source']}\t{row['metric']}\t{value}\t{row['seconds']:.1f}")
    return lines


# --- CLI (wired into ``python -m core.experiments transferability``) -----------------------------

COMMAND = "transferability"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(commands) -> None:
    """Adds the ``transferability`` subcommand to ``core.experiments``' subparsers."""
    parser = commands.add_parser(COMMAND, help="rank sources by a transferability score (no training)")
    parser.add_argument("--dataset", required=True, help="target dataset (dogs-vs-cats, gtsrb, ...)")
    parser.add_argument("--sources", required=True,
                        help="comma-separated: imagenet:BACKBONE, random:BACKBONE, run:RUN_ID")
    parser.add_argument("--metric", choices=METRICS, default=LOGME)
    parser.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES,
                        help=f"target training images scored (default {DEFAULT_MAX_IMAGES})")
    parser.add_argument("--image-size", type=int,
                        help="input size for backbone sources (default 224 for dogs-vs-cats, 96 for the signs; "
                             "runs use their own)")
    parser.add_argument("--classes", help="comma-separated class ids to keep (e.g. a GTSRB subset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cache", action="store_true", help="recompute even when a score is cached")


def main(arguments) -> int:
    """Runs the subcommand: one ``source<TAB>metric<TAB>score<TAB>seconds`` line per source, best first."""
    import sys

    try:
        sources = [text.strip() for text in arguments.sources.split(",") if text.strip()]
        for source in sources:
            parse_source(source)
        classes = ([int(text) for text in arguments.classes.split(",") if text.strip()]
                   if arguments.classes else None)
        _check_max_images(arguments.max_images)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    failed = False
    rows = []
    for source in sources:
        started = time.perf_counter()
        try:
            details = score_details(source, arguments.dataset, arguments.metric, arguments.max_images,
                                    arguments.seed, image_size=arguments.image_size, classes=classes,
                                    use_cache=not arguments.no_cache)
            details["seconds"] = time.perf_counter() - started
        except (ValueError, RuntimeError, OSError) as error:
            failed = True
            print(f"error: {source}: {error}", file=sys.stderr)
            details = {"source": source, "metric": arguments.metric, "score": None,
                       "seconds": time.perf_counter() - started, "error": str(error)}
        rows.append(details)
    rows.sort(key=lambda row: (row["score"] is None, -(row["score"] or 0.0)))
    for line in format_rows(rows):
        print(line, flush=True)
    return EXIT_FAILED if failed else EXIT_OK
