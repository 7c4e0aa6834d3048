"""Bottleneck features: run a frozen base once, train the head on the cached output.

With a frozen convolutional base, every epoch would push the same images through the same
14.7 M VGG16 weights again. Instead ``cached_features`` computes the base's output once and
stores it on disk under the data root; the head then trains on those arrays, which makes an
epoch tens to hundreds of times cheaper on a CPU (``bench/bench_bottleneck.py`` measures it).

Augmentation changes the input every epoch, so it cannot be cached as such. With augmentation
on, ``copies`` (K) augmented versions of every training image are precomputed, and epoch ``e``
trains on copy ``e mod K`` (``RotatingFeatures``): each epoch still sees N images, and the head
sees K different augmentations of each. The augmentation runs in training mode inside the same
compiled ``predict_on_batch`` call as the base (``layers.TrainingModeWrapper``), not eagerly
before it. Validation and test features are computed once without augmentation (Keras
augmentation layers are inactive at inference anyway). The base runs with its batch norms and
"same" zero paddings folded into its convolutions (``core.models.folding``: the same features up
to float rounding), and a flip after the warp is drawn inside the warp
(``preprocess.flip_into_warp``); MobileNetV2's features came about 1.5x faster on 2 CPU cores.

Cache layout: ``<data root>/cache/bottleneck/<backbone>-<dataset>-<S>px-k<K>-<hash>/`` with
``<split>.npy`` (float16, shape (K, N, h, w, c), or (K, N, c) for a pooling head, whose
features are cached after its global pooling), ``<split>-labels.npy`` and ``meta.json``. The
hash covers the backbone weights' fingerprint, dataset, image size, K, preprocessing,
augmentation spec, head and pooling, and subset settings, so any change gives a new folder.

``bench/bench_feature_extraction.py`` measures this path against the old one (eager
augmentation, feature maps cached, TensorFlow's default kernels).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from core import paths
from core.files import file_lock, write_atomic, write_json_atomic

CACHE_FOLDER = ("cache", "bottleneck")
FEATURE_DTYPE = "float16"
DEFAULT_BATCH_SIZE = 32
META_FILE = "meta.json"
META_LOCK_FILE = ".meta.json.lock"


def cache_key(*, weights_fingerprint: str, dataset: str, image_size: int, copies: int,
              backbone: str = "", settings: dict | None = None) -> str:
    """Names a cache folder from everything that determines the features.

    Args:
        weights_fingerprint: ``core.models.backbones.weights_fingerprint`` of the base.
        dataset: dataset name.
        image_size: input size in pixels.
        copies: K, the number of (augmented) copies of the training split.
        backbone: backbone name (for a readable folder name).
        settings: anything else that changes the images (preprocessing, augmentation spec,
            train_size, classes, labels_per_class, seed...). Must be JSON-serialisable.

    Returns:
        A folder name such as ``vgg16-dogs-vs-cats-224px-k5-1a2b3c4d5e6f``.
    """
    if not isinstance(copies, int) or copies < 1:
        raise ValueError(f"copies must be a positive int, received {copies!r}")
    payload = json.dumps({"weights": weights_fingerprint, "dataset": dataset,
                          "image_size": int(image_size), "copies": copies,
                          "backbone": backbone, "settings": settings or {}},
                         sort_keys=True, default=str)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
    readable = "-".join(part for part in (backbone, dataset, f"{int(image_size)}px", f"k{copies}") if part)
    return f"{readable}-{digest}"


def cache_root() -> Path:
    """The folder holding every bottleneck cache (``<data root>/cache/bottleneck``)."""
    return paths.data_dir().joinpath(*CACHE_FOLDER)


def compute_features(extractor, images: np.ndarray, *, augmentation=None, copies: int = 1,
                     batch_size: int = DEFAULT_BATCH_SIZE,
                     progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Runs ``extractor`` over ``images``, K times with augmentation when one is given.

    Args:
        extractor: a Keras model from images to features (frozen base).
        images: uint8 array (N, S, S, C).
        augmentation: a Keras layer called with ``training=True`` before the extractor (in the
            same compiled call), or None.
        copies: K; must be 1 without augmentation.
        batch_size: images per forward pass.
        progress: ``progress(batches_done, batches_total)``.
        should_stop: polled between batches; returning True aborts with ``InterruptedError``.

    Returns:
        A float16 array (K, N, *feature_shape).
    """
    import keras

    from core.datasets.preprocess import flip_into_warp
    from core.models.folding import fold_for_inference
    from core.models.layers import TrainingModeWrapper

    if augmentation is None and copies != 1:
        raise ValueError(f"copies must be 1 without augmentation, received {copies}")
    # The base is frozen and runs in inference mode: its batch norms and paddings fold into its
    # convolutions (the same features up to float rounding, computed faster).
    extractor = fold_for_inference(extractor)
    model = extractor
    if augmentation is not None:  # augmentation and base in one compiled predict call
        augmentation = flip_into_warp(augmentation)
        inputs = keras.Input(tuple(extractor.inputs[0].shape[1:]), name="image")
        augmented = TrainingModeWrapper(augmentation, name="augmentation_in_training_mode")(inputs)
        model = keras.Model(inputs, extractor(augmented), name=f"{extractor.name}_augmented")
    count = len(images)
    feature_shape = tuple(int(dim) for dim in extractor.outputs[0].shape[1:])
    output = np.empty((copies, count) + feature_shape, dtype=FEATURE_DTYPE)
    batches = math.ceil(count / batch_size) if count else 0
    total = batches * copies
    done = 0
    for copy in range(copies):
        for start in range(0, count, batch_size):
            if should_stop is not None and should_stop():
                raise InterruptedError("feature extraction cancelled")
            # As stored (uint8): the model casts inside its compiled call, which is cheaper than
            # handing it four times the bytes as float32.
            batch = np.asarray(images[start:start + batch_size])
            size = len(batch)
            if size < batch_size < count:  # pad the last batch: one compiled shape, no retracing
                batch = np.concatenate([batch, np.zeros((batch_size - size,) + batch.shape[1:],
                                                        batch.dtype)])
            output[copy, start:start + size] = np.asarray(model.predict_on_batch(batch))[:size]
            done += 1
            if progress is not None:
                progress(done, total)
    return output


def cached_features(key: str, split: str, compute: Callable[[], np.ndarray], labels: np.ndarray,
                    *, root: str | os.PathLike | None = None) -> tuple[np.ndarray, dict]:
    """Loads ``<key>/<split>.npy`` if present and consistent, else computes and stores it.

    Args:
        key: a folder name from ``cache_key``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        compute: returns the (K, N, ...) feature array when the cache misses.
        labels: the split's labels; a cached file whose labels differ is recomputed.
        root: cache root (default ``cache_root()``).

    Returns:
        ``(features, info)`` where features is memory-mapped when read from disk and ``info`` has
        ``hit`` (bool), ``seconds`` (time to load or compute) and ``path``.
    """
    folder = Path(root or cache_root()) / key
    folder.mkdir(parents=True, exist_ok=True)
    features_path = folder / f"{split}.npy"
    labels_path = folder / f"{split}-labels.npy"
    started = time.perf_counter()
    labels = np.asarray(labels, dtype="int64")
    if features_path.exists() and labels_path.exists():
        try:
            stored_labels = np.load(labels_path)
            features = np.load(features_path, mmap_mode="r")
            if np.array_equal(stored_labels, labels) and features.shape[1] == len(labels):
                return features, {"hit": True, "seconds": time.perf_counter() - started,
                                  "path": str(features_path)}
        except (OSError, ValueError):
            pass  # unreadable cache file: recompute it below
    features = compute()
    if features.ndim < 2 or features.shape[1] != len(labels):
        raise ValueError(
            f"computed features must be (K, N, ...) with N = {len(labels)}, received {features.shape}"
        )
    write_atomic(features_path, lambda temp: np.save(temp, np.ascontiguousarray(features)))
    write_atomic(labels_path, lambda temp: np.save(temp, np.ascontiguousarray(labels)))
    update_meta(folder, split, {"shape": list(features.shape), "dtype": str(features.dtype),
                                "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return features, {"hit": False, "seconds": time.perf_counter() - started, "path": str(features_path)}


def update_meta(folder: str | os.PathLike, split: str, entry: dict) -> dict:
    """Sets ``meta.json[split] = entry`` in a cache folder under a cross-process file lock.

    Two runs filling the same cache entry (e.g. one the train split, one the val split) each
    read, modify and write ``meta.json``; the lock keeps either update from being lost.

    Args:
        folder: the cache entry folder (``cache_root() / key``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        entry: what to store for the split.

    Returns:
        The whole ``meta.json`` content as written.

    Raises:
        TimeoutError: when the lock stays taken by another process (nothing written).
    """
    folder = Path(folder)
    meta_path = folder / META_FILE
    with file_lock(folder / META_LOCK_FILE):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            meta = {}
        except ValueError:
            meta = {}  # a corrupt meta.json is rebuilt from what is written now
        if not isinstance(meta, dict):
            meta = {}
        meta[split] = entry
        write_json_atomic(meta_path, meta)
    return meta


def make_rotating_features(features: np.ndarray, labels: np.ndarray, *, batch_size: int,
                           shuffle: bool = True, seed: int = 0):
    """A ``keras.utils.PyDataset`` over (K, N, ...) features: epoch ``e`` uses copy ``e mod K``.

    Args:
        features: the cached training features (may be memory-mapped).
        labels: (N,) labels.
        batch_size: samples per batch.
        shuffle: reshuffle the order every epoch.
        seed: seed of the shuffling.

    Returns:
        A ``RotatingFeatures`` instance for ``model.fit``.
    """
    import keras

    class RotatingFeatures(keras.utils.PyDataset):
        """Batches of one augmented copy per epoch, cast to float32."""

        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.features = features
            self.labels = np.asarray(labels, dtype="int64")
            self.batch_size = int(batch_size)
            self.copies = int(features.shape[0])
            self.epoch = 0
            self.random = np.random.default_rng(seed)
            self.order = self._new_order()

        def _new_order(self):
            order = np.arange(len(self.labels))
            if shuffle:
                self.random.shuffle(order)
            return order

        def __len__(self):
            return math.ceil(len(self.labels) / self.batch_size)

        def __getitem__(self, index):
            chosen = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
            copy = self.features[self.epoch % self.copies]
            return np.asarray(copy[chosen], dtype="float32"), self.labels[chosen]

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._new_order()

    if features.shape[1] != len(labels):
        raise ValueError(f"features hold {features.shape[1]} samples but labels {len(labels)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, received {batch_size}")
    return RotatingFeatures()
