"""Datasets: GTSRB, Dogs vs Cats, synthetic signs and custom datasets behind one interface.

* ``load(name, split, image_size=None, ...) -> DatasetSplit``: decoded uint8 RGB arrays
  (cached on disk after the first decode).
* ``get(name, sources=None, progress=None)``: import from local zips/folders, or download.
* ``delete(name)``; ``registry`` (names, info, status, counts, disk use); ``preprocess``
  (preprocessing and Keras augmentation). CLI: ``python -m core.datasets get|create|info|delete|list``.

Importing this package does no work: nothing is generated, decoded or read until called.
"""

from __future__ import annotations

import math

import numpy as np

from core.datasets import base, custom, dogs_vs_cats, gtsrb, registry, signs, synthetic_signs
from core.datasets.base import DATASET_NAMES, DatasetError, DatasetSplit

__all__ = ["DATASET_NAMES", "DatasetError", "DatasetSplit", "create", "delete", "get", "load", "registry"]


def _cap(images, labels, file_names, size, seed, name, what):
    """Stratified, seeded subsample of a split down to ``size`` images (no-op if smaller)."""
    if size is None or size >= len(labels):
        return images, labels, file_names
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise DatasetError(f"{what} must be a positive int, received {size!r}")
    counts = {int(label): int(count) for label, count in zip(*np.unique(labels, return_counts=True))}
    wanted = base.stratified_counts(counts, int(size))
    rng = np.random.default_rng([int(seed), 4410])
    keep = np.sort(np.concatenate([
        rng.permutation(np.flatnonzero(labels == label))[: wanted[label]] for label in sorted(counts)
    ]))
    return images[keep], labels[keep], [file_names[index] for index in keep]


def load(name: str, split: str, image_size: int | None = None, *, train_size: int | None = None,
         valid_size: int | None = None, classes=None, labels_per_class: int | None = None,
         seed: int = 0, split_seed: int = 0, valid_fraction: float | None = None,
         roi_crop: bool = False, use_cache: bool = True) -> DatasetSplit:
    """Loads one split of one dataset as decoded arrays.

    Args:
        name: ``"gtsrb"``, ``"dogs-vs-cats"``, ``"synthetic-signs"`` or an installed custom
            dataset (``core.datasets.custom``).
        split: ``"train"``, ``"val"`` or ``"test"`` (test only where the dataset has one).
        image_size: side of the square images; default the dataset's natural size (32 for the
            signs, 224 for dogs-vs-cats).
        train_size: dogs-vs-cats: training images after validation is taken (default 2,000);
            other datasets: a stratified cap on the train split (default: all).
        valid_size: dogs-vs-cats: validation images (default 500); others: a cap on val.
        classes: keep only these original class ids, relabelled ``0..len-1`` in this order.
        labels_per_class: keep K images per class, seeded by ``seed``; applies to the train
            split only (val and test stay whole, so evaluations stay comparable).
        seed: seed of ``labels_per_class`` (and of the caps on gtsrb/synthetic splits).
        split_seed: seed of the train/validation partition (GTSRB's track split, dogs-vs-cats'
            subsampling); kept apart from ``seed`` so that runs with different seeds share one
            validation set.
        valid_fraction: GTSRB only: fraction of each class's images (whole tracks) for val
            (default 0.11).
        roi_crop: GTSRB only: crop to the annotated ROI (scaled to the actual image size).
        use_cache: read/write the decoded-array cache under ``<data root>/<name>/cache``.

    Returns:
        A ``DatasetSplit``: ``.images`` uint8 N x S x S x 3 RGB, ``.labels`` int64,
        ``.class_names``, ``.file_names``, ``.name``, ``.split``, ``.class_ids``, ``.synthetic``.

    Raises:
        DatasetError (a ValueError): unknown name or split, a dataset that is not installed, a
            bad argument.
    """
    base.check_name(name)
    info = registry.get_info(name)
    base.check_split(name, split, info.splits)
    size = base.check_image_size(image_size, info.natural_image_size)
    if name != "gtsrb" and (valid_fraction is not None or roi_crop):
        raise DatasetError(f"valid_fraction and roi_crop apply to gtsrb only, not to {name!r}")
    if name == "gtsrb":
        images, labels, file_names = gtsrb.load_split(
            split, size, roi_crop=roi_crop,
            valid_fraction=gtsrb.VALID_FRACTION if valid_fraction is None else float(valid_fraction),
            split_seed=split_seed, use_cache=use_cache)
        cap = train_size if split == "train" else valid_size if split == "val" else None
        images, labels, file_names = _cap(images, labels, file_names, cap, seed, name,
                                          "train_size" if split == "train" else "valid_size")
    elif base.is_custom(name):
        images, labels, file_names = custom.load_split(name, split, size, split_seed=split_seed,
                                                       use_cache=use_cache)
        cap = train_size if split == "train" else valid_size
        images, labels, file_names = _cap(images, labels, file_names, cap, seed, name,
                                          "train_size" if split == "train" else "valid_size")
    elif name == "dogs-vs-cats":
        images, labels, file_names, _ = dogs_vs_cats.load_split(
            split, size,
            train_size=dogs_vs_cats.TRAIN_SIZE if train_size is None else train_size,
            valid_size=dogs_vs_cats.VALID_SIZE if valid_size is None else valid_size,
            split_seed=split_seed, use_cache=use_cache)
    else:
        cap = train_size if split == "train" else valid_size if split == "val" else None
        per_class = synthetic_signs.default_count(split)
        if cap is not None and cap > per_class * signs.NUM_CLASSES:
            per_class = math.ceil(cap / signs.NUM_CLASSES)
        images, labels, file_names = synthetic_signs.load_split(split, size, per_class, use_cache)
        images, labels, file_names = _cap(images, labels, file_names, cap, seed, name,
                                          "train_size" if split == "train" else "valid_size")
    images, labels, file_names, class_names, class_ids = base.select_classes(
        images, labels, file_names, info.class_names, classes, labels_per_class, seed, split, name)
    return DatasetSplit(images=images, labels=labels, class_names=class_names, file_names=file_names,
                        name=name, split=split, class_ids=class_ids, synthetic=info.synthetic)


def get(name: str, sources=None, progress=None, *, variant: str | None = None) -> dict:
    """Installs a dataset: imports local files, downloads, or (synthetic) generates the cache.

    Args:
        name: a dataset name.
        sources: paths (zips, extracted folders, folders of zips); ``None`` downloads.
        progress: optional ``callback(phase, done, total)``.
        variant: dogs-vs-cats download choice, ``"filtered"`` (default, 68 MB) or
            ``"microsoft"`` (825 MB).

    Returns:
        The dataset's manifest (synthetic-signs: the generated split sizes).
    """
    base.check_name(name)
    if base.is_custom(name):
        raise DatasetError(f"{name!r} is a custom dataset: it is built with `python -m core.datasets "
                           f"create`, not fetched; delete it and create it again to change it")
    if name == "synthetic-signs":
        if sources:
            raise DatasetError("synthetic-signs is generated, it cannot be imported from files")
        result = {}
        for split in ("train", "val", "test"):
            if progress is not None:
                progress(f"generate synthetic {split} images", 0, None)
            images, _, _ = synthetic_signs.load_split(split, synthetic_signs.NATURAL_IMAGE_SIZE)
            result[split] = len(images)
        return {"dataset": name, "synthetic": True, "counts": result}
    if sources:
        installer = gtsrb.install if name == "gtsrb" else dogs_vs_cats.install
        return installer(list(sources), progress=progress)
    from core.datasets import download

    return download.download_and_install(name, progress=progress, variant=variant)


def create(name: str, classes, *, title: str | None = None, progress=None) -> dict:
    """Builds a custom dataset from your own images (see ``core.datasets.custom.create``)."""
    return custom.create(name, classes, title=title, progress=progress)


def delete(name: str) -> int:
    """Deletes a dataset (files and caches); returns bytes freed."""
    return registry.delete(name)
