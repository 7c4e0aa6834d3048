"""Cheap looks at a dataset for the page: a few original images per class, and image grids.

:func:`samples` decodes only the few files it shows (never a whole split), at their original
size, so the page's "before/after" view can show what resizing does.
"""

from __future__ import annotations

import cv2
import numpy as np

from core import imaging
from core.datasets import base, custom, dogs_vs_cats, gtsrb, registry, signs, sources, synthetic_signs

MAX_PER_CLASS = 16


def samples(name: str, per_class: int = 1, classes=None, split: str = "train",
            seed: int = 0) -> tuple[list[np.ndarray], list[int], list[str]]:
    """A few original images per class (uint8 RGB, each at its own size).

    Args:
        name: dataset name (must be ready).
        per_class: images per class (at most ``MAX_PER_CLASS``).
        classes: class ids to show (default: all).
        split: which split to draw from.
        seed: which images (deterministic).

    Returns:
        ``(images, labels, file_names)``, grouped by class in the order of ``classes``.
    """
    info = registry.get_info(name)
    base.check_split(name, split, info.splits)
    per_class = int(np.clip(per_class, 1, MAX_PER_CLASS))
    class_ids = list(range(len(info.class_names))) if classes is None else [int(c) for c in classes]
    rng = np.random.default_rng([seed, 31])
    if name == "synthetic-signs":
        images, labels, names = synthetic_signs.generate(class_ids, per_class, split, 64)
        return list(images), labels.tolist(), names
    if name == "gtsrb":
        records = gtsrb.split_records(split)
        folder = base.dataset_dir(name) / ("test" if split == "test" else "train")
        paths = [folder / record.file_name for record in records]
        file_names = [record.file_name for record in records]
        labels = np.array([record.class_id for record in records], dtype=np.int64)
    elif base.is_custom(name):
        file_names, labels = custom.plan_split(name, split)
        folder = base.dataset_dir(name) / custom.PART
        paths = [folder / file_name for file_name in file_names]
    else:
        split_folder, file_names, labels = dogs_vs_cats.plan_split(split)
        folder = base.dataset_dir(name) / dogs_vs_cats.PART / split_folder
        paths = [folder / file_name for file_name in file_names]
    chosen_images, chosen_labels, chosen_names = [], [], []
    for class_id in class_ids:
        members = np.flatnonzero(labels == class_id)
        for index in rng.permutation(members)[:per_class]:
            try:
                image = imaging.read_image(paths[index].read_bytes(), max_bytes=sources.MAX_MEMBER_BYTES)
            except (OSError, imaging.ImageError):
                continue
            chosen_images.append(np.asarray(image))
            chosen_labels.append(int(class_id))
            chosen_names.append(file_names[index])
    return chosen_images, chosen_labels, chosen_names


def grid(images, columns: int, tile: int = 64, pad: int = 2, background: int = 255) -> np.ndarray:
    """Lays out images (any sizes, 1 or 3 channels) in a grid of ``tile`` x ``tile`` cells.

    Returns:
        One uint8 RGB image.
    """
    images = list(images)
    columns = max(1, min(columns, len(images) or 1))
    rows = max(1, -(-len(images) // columns))
    canvas = np.full((rows * (tile + pad) + pad, columns * (tile + pad) + pad, 3), background, np.uint8)
    for index, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., np.newaxis]
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        interpolation = cv2.INTER_AREA if max(image.shape[:2]) > tile else cv2.INTER_NEAREST
        cell = cv2.resize(np.ascontiguousarray(image[..., :3]), (tile, tile), interpolation=interpolation)
        row, column = divmod(index, columns)
        top, left = pad + row * (tile + pad), pad + column * (tile + pad)
        canvas[top:top + tile, left:left + tile] = cell
    return canvas


def class_label(name: str, class_id: int) -> str:
    """``"14 Stop"`` for the signs, the class name for the others."""
    names = registry.get_info(name).class_names
    if len(names) == signs.NUM_CLASSES and name in ("gtsrb", "synthetic-signs"):
        return f"{class_id} {names[class_id]}"
    return names[class_id]
