"""Shared pieces of the dataset layer: the split type, the error type, folders, sampling helpers.

Layout under the data root (``core.paths.data_dir()``, i.e. ``$TLLAB_DATA_DIR``)::

    <root>/<name>/manifest.json     what is installed (parts, source fingerprints, counts)
    <root>/<name>/<part>/...        installed files (e.g. gtsrb/train, gtsrb/test)
    <root>/<name>/cache/*.npz       decoded arrays, keyed by source fingerprint + parameters
    <root>/.staging/                temporary downloads and extractions (same file system, so
                                    installing is a rename)
    <root>/.progress/<name>.json    progress of a running get/download (for the page)
    <root>/checksums.json           SHA-256 pinned on first successful download of an
                                    unchecksummed URL
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import files, paths
from core.files import write_json_atomic  # noqa: F401 - the datasets call it as base.write_json_atomic

DATASET_NAMES = ("gtsrb", "dogs-vs-cats", "synthetic-signs")
CUSTOM_KIND = "custom"  # manifest["kind"] of a dataset built with ``create`` (core.datasets.custom)
CUSTOM_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.json"
CACHE_FOLDER = "cache"
STAGING_FOLDER = ".staging"
PROGRESS_FOLDER = ".progress"
STALE_STAGING_SECONDS = 24 * 3600  # a killed download/import's temporary files are removed after this
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class DatasetError(ValueError):
    """A problem with a dataset or its source, with a message meant for the user."""


@dataclass
class DatasetSplit:
    """One split of one dataset, decoded.

    Attributes:
        images: uint8 array N x H x W x 3, RGB.
        labels: int64 array N, in ``0 .. len(class_names) - 1``.
        class_names: the names of the labels, in label order.
        file_names: each image's original file name (relative to its split folder), or a
            generated id for synthetic images.
        name: the dataset name, e.g. ``"gtsrb"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        class_ids: the dataset's original class id of each label (differs from
            ``range(len(class_names))`` when ``classes=`` picked a subset).
        synthetic: True for generated data.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    file_names: list[str]
    name: str
    split: str
    class_ids: list[int] = field(default_factory=list)
    synthetic: bool = False

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        """The side of the (square) images."""
        return int(self.images.shape[1])

    def class_counts(self) -> list[int]:
        """Number of images per label."""
        return np.bincount(self.labels, minlength=len(self.class_names)).astype(int).tolist()


def is_custom(name) -> bool:
    """True when ``name`` is an installed custom dataset (a folder under the data root whose
    manifest says ``"kind": "custom"``). Never raises; names with path characters are False."""
    if not isinstance(name, str) or name in DATASET_NAMES or not CUSTOM_NAME_PATTERN.match(name):
        return False
    manifest = read_json(paths.data_dir() / name / MANIFEST_NAME)
    return bool(manifest) and manifest.get("kind") == CUSTOM_KIND and manifest.get("dataset") == name


def custom_dataset_names() -> list[str]:
    """The installed custom datasets, sorted by name."""
    root = paths.data_dir()
    try:
        children = sorted(child.name for child in root.iterdir() if child.is_dir())
    except OSError:
        return []
    return [name for name in children if is_custom(name)]


def dataset_names() -> tuple[str, ...]:
    """Every dataset ``load`` accepts now: the built-in ones, then the installed custom ones."""
    return DATASET_NAMES + tuple(custom_dataset_names())


def check_name(name: str) -> str:
    """Returns ``name`` when it is a built-in or an installed custom dataset.

    Raises:
        DatasetError: for any other name (including names with path characters).
    """
    if name in DATASET_NAMES or is_custom(name):
        return name
    known = ", ".join(dataset_names())
    raise DatasetError(f"unknown dataset {name!r}; expected one of {known} (or a custom dataset "
                       "built with `python -m core.datasets create`)")


def dataset_dir(name: str) -> Path:
    """The folder of one dataset under the data root (not created)."""
    return paths.data_dir() / check_name(name)


def cache_dir(name: str) -> Path:
    """The decoded-array cache folder of one dataset (not created)."""
    return dataset_dir(name) / CACHE_FOLDER


def staging_dir() -> Path:
    """A folder for temporary files on the data root's file system (created)."""
    path = paths.data_dir() / STAGING_FOLDER
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_staging_dir(prefix: str) -> Path:
    """Creates and returns a fresh temporary folder under the staging folder.

    Leftovers of killed processes (older than ``STALE_STAGING_SECONDS``) are removed first.
    """
    folder = staging_dir()
    now = time.time()
    for child in folder.iterdir():
        try:
            if now - child.stat().st_mtime > STALE_STAGING_SECONDS:
                remove_tree(child)
        except OSError:
            pass
    for _ in range(3):
        try:
            return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=staging_dir()))
        except FileNotFoundError:
            continue  # another process just removed the empty staging folder (remove_staging_dir)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=staging_dir()))


def remove_staging_dir(path: Path) -> None:
    """Deletes one temporary folder from ``new_staging_dir``, and the staging folder itself when
    nothing else is staged, so that a finished or refused import leaves no folder behind."""
    remove_tree(path)
    try:
        path.parent.rmdir()
    except OSError:
        pass  # other imports are staging files there



def read_json(path: Path) -> dict | None:
    """A JSON object read by ``core.files.read_json``; ``None`` when the file is missing,
    unreadable or not an object (dataset records are rebuilt then)."""
    try:
        payload = files.read_json(path)
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def read_manifest(name: str) -> dict | None:
    """The installed dataset's manifest, or ``None`` when absent/unreadable."""
    return read_json(dataset_dir(name) / MANIFEST_NAME)


def remove_tree(path: Path) -> None:
    """Deletes a file or folder if it exists (best effort for folders)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def folder_size(path: Path) -> int:
    """Total bytes of the files under ``path`` (0 when absent)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for file_name in files:
            try:
                total += os.lstat(os.path.join(root, file_name)).st_size
            except OSError:
                pass
    return total


def check_split(name: str, split: str, available: tuple[str, ...]) -> None:
    """Raises a ``DatasetError`` unless ``split`` is one of ``available``."""
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS}, received {split!r}")
    if split not in available:
        raise DatasetError(
            f"dataset {name!r} has no {split!r} split here; available: {', '.join(available)}"
        )


def check_image_size(image_size, default: int) -> int:
    """Validates an ``image_size`` argument (``None`` means ``default``)."""
    if image_size is None:
        return default
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or not (
        8 <= image_size <= 1024
    ):
        raise DatasetError(f"image_size must be an int between 8 and 1024, received {image_size!r}")
    return int(image_size)


def stratified_counts(class_counts: dict[int, int], total: int) -> dict[int, int]:
    """Splits ``total`` over classes in proportion to their counts (largest remainder).

    Args:
        class_counts: available images per class.
        total: how many to take altogether (capped at the number available).

    Returns:
        How many to take from each class; never more than a class has.
    """
    available = sum(class_counts.values())
    total = max(0, min(total, available))
    if available == 0:
        return {label: 0 for label in class_counts}
    exact = {label: total * count / available for label, count in class_counts.items()}
    taken = {label: int(np.floor(value)) for label, value in exact.items()}
    remainder = total - sum(taken.values())
    order = sorted(class_counts, key=lambda label: (-(exact[label] - taken[label]), label))
    for label in order:
        if remainder <= 0:
            break
        if taken[label] < class_counts[label]:
            taken[label] += 1
            remainder -= 1
    return taken


def select_classes(images: np.ndarray, labels: np.ndarray, file_names: list[str],
                   class_names: list[str], classes, labels_per_class, seed: int, split: str,
                   name: str):
    """Applies ``classes=`` (subset + relabel) and ``labels_per_class=`` (train only).

    Returns:
        ``(images, labels, file_names, class_names, class_ids)``.
    """
    num_classes = len(class_names)
    class_ids = list(range(num_classes))
    if classes is not None:
        try:
            class_ids = [int(value) for value in classes]
        except (TypeError, ValueError):
            raise DatasetError(f"classes must be a list of int class ids, received {classes!r}") from None
        if not class_ids:
            raise DatasetError("classes must name at least one class id, received an empty list")
        bad = [value for value in class_ids if not 0 <= value < num_classes]
        if bad:
            raise DatasetError(
                f"classes {bad} are not class ids of {name!r}; expected ids in 0..{num_classes - 1}"
            )
        if len(set(class_ids)) != len(class_ids):
            raise DatasetError(f"classes must not repeat an id, received {class_ids}")
        lookup = np.full(num_classes, -1, dtype=np.int64)
        lookup[class_ids] = np.arange(len(class_ids))
        new_labels = lookup[labels]
        keep = np.flatnonzero(new_labels >= 0)
        images, labels = images[keep], new_labels[keep]
        file_names = [file_names[index] for index in keep]
        class_names = [class_names[value] for value in class_ids]
    if labels_per_class is not None and split == "train":
        if isinstance(labels_per_class, bool) or not isinstance(labels_per_class, (int, np.integer)) \
                or labels_per_class < 1:
            raise DatasetError(f"labels_per_class must be a positive int, received {labels_per_class!r}")
        rng = np.random.default_rng([int(seed), 7919])
        keep_parts = []
        for label in range(len(class_names)):
            members = np.flatnonzero(labels == label)
            if len(members) < labels_per_class:
                raise DatasetError(
                    f"labels_per_class={labels_per_class} but class {class_ids[label]} "
                    f"({class_names[label]!r}) has only {len(members)} {split} images"
                )
            keep_parts.append(np.sort(rng.choice(members, size=labels_per_class, replace=False)))
        keep = np.sort(np.concatenate(keep_parts)) if keep_parts else np.empty(0, dtype=np.int64)
        images, labels = images[keep], labels[keep]
        file_names = [file_names[index] for index in keep]
    return images, labels.astype(np.int64), list(file_names), list(class_names), class_ids


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes an H x W x 3 uint8 image to size x size (area when shrinking, linear else)."""
    import cv2

    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    interpolation = cv2.INTER_AREA if (height > size or width > size) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)
