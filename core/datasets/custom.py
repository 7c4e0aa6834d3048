"""Custom datasets: your own classes, from folders, zips, single images or in-memory uploads.

``create(name, {label: [sources...]})`` builds a dataset that ``core.datasets.load(name, split)``
reads like the built-in ones (``python -m core.datasets create NAME --class LABEL=PATH ...`` or
``create NAME --from FOLDER`` with one sub-folder per class).

Layout under the data root (the same shape as the other datasets)::

    <root>/<name>/manifest.json              "kind": "custom", class names, counts, skipped files
    <root>/<name>/images/<label>/<sha>.jpg   each distinct image once, EXIF-oriented RGB JPEG,
                                             longest side at most STORED_MAX_SIDE pixels
    <root>/<name>/cache/*.npz                decoded arrays (core.datasets.cache)

Every image is decoded through ``core.imaging.read_image`` at creation; files that do not
decode are skipped and counted, identical files (same bytes) are stored once and counted as
duplicates. The dataset is written to a staging folder and renamed into place only when every
check passed: a refused request creates nothing.

Splits: ``train`` and ``val``. Validation takes ``VALID_FRACTION`` of each class (at least one
image), seeded by ``split_seed``: stratified and reproducible.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from core import paths
from core.datasets import base, cache, sources

PART = "images"
FORMAT_VERSION = 1
NATURAL_IMAGE_SIZE = 224
SPLITS = ("train", "val")
VALID_FRACTION = 0.2
SPLIT_SEED = 0
MIN_CLASSES = 2
MIN_IMAGES_PER_CLASS = 5
MAX_CLASSES = 50
MAX_FILES_PER_CLASS = 5_000       # candidate files per class, counted before anything is decoded
MAX_TOTAL_FILES = 20_000
MAX_FILE_BYTES = 25 * 1024 * 1024  # one image file (larger ones are skipped and counted)
MAX_SOURCE_BYTES = 2 * 1024 ** 3   # all candidate files together
STORED_MAX_SIDE = 512
STORED_JPEG_QUALITY = 92
LABEL_PATTERN = re.compile(r"^\w[\w -]{0,39}$")
# Folder names under the data root that belong to other parts of the app.
RESERVED_NAMES = ("cache", "weights", "uploads", "staging", "progress", "runs", "images", "manifest")
SKIP_REASONS = ("non_image_files", "undecodable_images", "too_large_files", "duplicates")

ProgressCallback = Callable[[str, int, "int | None"], None]


def check_new_name(name) -> str:
    """Validates the name of a dataset to create.

    Args:
        name: lower-case letters, digits, ``-`` and ``_`` (1 to 48 characters, starting with a
            letter or digit); not a built-in dataset, not a reserved folder, not installed yet.

    Returns:
        ``name``.

    Raises:
        DatasetError: naming what was received and what is expected.
    """
    if not isinstance(name, str) or not base.CUSTOM_NAME_PATTERN.match(name):
        raise base.DatasetError(
            f"dataset name {name!r} is not allowed; expected 1 to 48 lower-case letters, digits, "
            "'-' or '_' starting with a letter or digit (no path characters such as '/' or '..')")
    if name in base.DATASET_NAMES:
        raise base.DatasetError(f"{name!r} is a built-in dataset; choose another name for yours")
    if name in RESERVED_NAMES:
        raise base.DatasetError(f"{name!r} is reserved for the app's own folders; choose another name")
    if (paths.data_dir() / name).exists():
        what = "a custom dataset" if base.is_custom(name) else "a folder"
        raise base.DatasetError(
            f"{what} named {name!r} already exists under {paths.data_dir()}; choose another name "
            f"or delete it first (`python -m core.datasets delete {name}`)")
    return name


def check_label(label) -> str:
    """Validates one class label (it becomes a folder name) and returns it stripped.

    Raises:
        DatasetError: for an empty label, path characters, or more than 40 characters.
    """
    text = label.strip() if isinstance(label, str) else label
    if not isinstance(text, str) or not LABEL_PATTERN.match(text):
        raise base.DatasetError(
            f"class label {label!r} is not allowed; expected 1 to 40 letters, digits, spaces, "
            "'-' or '_' (no path characters)")
    return text


class _Item:
    """One candidate image: where it comes from (for messages) and how to read its bytes."""

    def __init__(self, origin: str, size: int, reader: Callable[[], bytes]):
        self.origin = origin
        self.size = size
        self.reader = reader


def _items_from_path(path, opened: list) -> tuple[list[_Item], int]:
    """Candidate images under one path: a single file, a zip or a folder tree.

    Returns:
        ``(items, non_image_files)``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise base.DatasetError(f"{path} does not exist; expected a folder, a zip or an image file")
    is_zip = path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path))
    if path.is_file() and not is_zip:
        return [_Item(str(path), path.stat().st_size, path.read_bytes)], 0
    files = sources.SourceFiles(path)
    opened.append(files)
    items, non_images = [], 0
    for member in files.names:
        if sources.is_ignored(member) or not sources.is_image_name(member):
            non_images += 1
            continue
        items.append(_Item(f"{path}/{member}", files.size(member),
                           lambda member=member, files=files: files.read(member)))
    return items, non_images


def _items_from_bytes(entry, index: int) -> _Item:
    """An in-memory image: ``bytes`` or ``(file_name, bytes)`` (e.g. a page upload)."""
    if isinstance(entry, tuple) and len(entry) == 2:
        file_name, data = entry
    else:
        file_name, data = f"image {index + 1}", entry
    data = bytes(data)
    return _Item(str(file_name), len(data), lambda: data)


def classes_from_folder(folder) -> dict[str, list[str]]:
    """``{label: [sub-folder]}`` for a folder with one sub-folder of images per class.

    Raises:
        DatasetError: the folder does not exist or has no sub-folders.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise base.DatasetError(f"{root} is not a folder; expected a folder with one sub-folder per class")
    children = sorted(child for child in root.iterdir()
                      if child.is_dir() and not child.name.startswith((".", "__MACOSX")))
    if not children:
        raise base.DatasetError(f"{root} has no sub-folders; expected one sub-folder of images per class")
    return {child.name: [str(child)] for child in children}


def _encode(image) -> bytes:
    """The stored form of a decoded image: RGB JPEG, longest side at most ``STORED_MAX_SIDE``."""
    image = image.copy()
    image.thumbnail((STORED_MAX_SIDE, STORED_MAX_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=STORED_JPEG_QUALITY)
    return buffer.getvalue()


def create(name: str, classes: Mapping[str, Iterable], *, title: str | None = None,
           progress: ProgressCallback | None = None) -> dict:
    """Builds a custom dataset from your own images.

    Args:
        name: the new dataset's name (see ``check_new_name``).
        classes: ``{label: [source, ...]}`` in class order. A source is a path (folder tree,
            zip or single image file), raw ``bytes``, or ``(file_name, bytes)``.
        title: a human title for the Datasets page (default: ``"Custom dataset NAME"``).
        progress: optional ``callback(phase, done, total)``.

    Returns:
        The manifest (class names, images per class, skipped files by reason).

    Raises:
        DatasetError: a bad name or label, fewer than ``MIN_CLASSES`` classes, a class with
            fewer than ``MIN_IMAGES_PER_CLASS`` usable images (the message names it), too many
            files, a missing path. Nothing is created then.
    """
    name = check_new_name(name)
    labels = [check_label(label) for label in classes]
    if len(labels) < MIN_CLASSES:
        raise base.DatasetError(
            f"a classifier needs at least {MIN_CLASSES} classes, received {len(labels)}"
            + (f" ({labels[0]!r})" if labels else ""))
    if len(labels) > MAX_CLASSES:
        raise base.DatasetError(f"at most {MAX_CLASSES} classes are allowed, received {len(labels)}")
    lowered = [label.lower() for label in labels]
    repeated = sorted({label for label in lowered if lowered.count(label) > 1})
    if repeated:
        raise base.DatasetError(f"class labels must differ (ignoring case), received {repeated} twice")
    opened: list[sources.SourceFiles] = []
    try:
        skipped = {reason: 0 for reason in SKIP_REASONS}
        plan: dict[str, list[_Item]] = {}
        for raw_label, label in zip(classes, labels):
            items: list[_Item] = []
            entries = classes[raw_label]
            if isinstance(entries, (str, os.PathLike, bytes, tuple)):
                entries = [entries]
            for index, entry in enumerate(entries):
                if isinstance(entry, (bytes, bytearray, memoryview, tuple)):
                    items.append(_items_from_bytes(entry, index))
                else:
                    found, non_images = _items_from_path(entry, opened)
                    items.extend(found)
                    skipped["non_image_files"] += non_images
                if len(items) > MAX_FILES_PER_CLASS:
                    raise base.DatasetError(
                        f"class {label!r} has more than {MAX_FILES_PER_CLASS:,} image files; "
                        "use fewer images per class")
            plan[label] = items
        total_files = sum(len(items) for items in plan.values())
        if total_files > MAX_TOTAL_FILES:
            raise base.DatasetError(f"{total_files:,} image files in all, above the limit of "
                                    f"{MAX_TOTAL_FILES:,}; use fewer images")
        total_bytes = sum(max(item.size, 0) for items in plan.values() for item in items)
        if total_bytes > MAX_SOURCE_BYTES:
            raise base.DatasetError(
                f"the images add up to {total_bytes / 1024 ** 3:.1f} GB, above the limit of "
                f"{MAX_SOURCE_BYTES / 1024 ** 3:.0f} GB")
        empty = [label for label, items in plan.items() if len(items) < MIN_IMAGES_PER_CLASS]
        if empty:
            raise base.DatasetError(_too_few_message(empty, {label: len(plan[label]) for label in empty},
                                                     "image file(s)", skipped))
        return _write(name, labels, plan, skipped, title, progress)
    finally:
        for files in opened:
            files.close()


def _too_few_message(labels: list[str], counts: dict[str, int], what: str, skipped: dict) -> str:
    listed = ", ".join(f"{label!r} has {counts[label]}" for label in labels)
    message = (f"each class needs at least {MIN_IMAGES_PER_CLASS} usable images: {listed} "
               f"{what}; add more images to {'it' if len(labels) == 1 else 'them'}")
    noted = {reason: value for reason, value in skipped.items() if value}
    if noted:
        message += " (skipped: " + ", ".join(f"{value} {reason.replace('_', ' ')}"
                                             for reason, value in noted.items()) + ")"
    return message


def _write(name: str, labels: list[str], plan: dict[str, list[_Item]], skipped: dict,
           title: str | None, progress: ProgressCallback | None) -> dict:
    """Decodes, deduplicates and stores every image in a staging folder, then renames it."""
    from core import imaging

    staging = base.new_staging_dir(f"custom-{name}")
    try:
        folder = staging / name
        seen: set[str] = set()
        counts = {label: 0 for label in labels}
        digests = []
        total = sum(len(items) for items in plan.values())
        done = 0
        for label in labels:
            class_folder = folder / PART / label
            class_folder.mkdir(parents=True)
            for item in plan[label]:
                done += 1
                if progress is not None and (done % 20 == 0 or done == total):
                    progress("decode and store images", done, total)
                if item.size > MAX_FILE_BYTES:
                    skipped["too_large_files"] += 1
                    continue
                data = item.reader()
                digest = hashlib.sha256(data).hexdigest()
                if digest in seen:
                    skipped["duplicates"] += 1
                    continue
                try:
                    image = imaging.read_image(data, max_bytes=MAX_FILE_BYTES)
                except imaging.ImageError:
                    skipped["undecodable_images"] += 1
                    continue
                seen.add(digest)
                digests.append(f"{label}/{digest}")
                try:
                    sources.write_file(class_folder / f"{digest[:20]}.jpg", _encode(image))
                except OSError as error:
                    raise base.DatasetError(sources.describe_os_error(error, paths.data_dir())) from None
                counts[label] += 1
        short = [label for label in labels if counts[label] < MIN_IMAGES_PER_CLASS]
        if short:
            raise base.DatasetError(_too_few_message(short, counts, "distinct decodable image(s)", skipped))
        manifest = {
            "dataset": name,
            "kind": base.CUSTOM_KIND,
            "format": FORMAT_VERSION,
            "title": title or f"Custom dataset {name}",
            "class_names": labels,
            "created_at": sources.now_iso(),
            "parts": {PART: {
                "fingerprint": hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest(),
                "counts": counts,
                "num_images": sum(counts.values()),
                "skipped": skipped,
            }},
        }
        base.write_json_atomic(folder / base.MANIFEST_NAME, manifest)
        target = paths.data_dir() / name
        try:
            os.rename(folder, target)  # atomic; fails when the target appeared meanwhile
        except OSError as error:
            if target.exists():
                raise base.DatasetError(f"a dataset named {name!r} was created meanwhile; choose "
                                        "another name") from None
            raise base.DatasetError(sources.describe_os_error(error, paths.data_dir())) from None
        return manifest
    finally:
        base.remove_tree(staging)


def read_manifest(name: str) -> dict:
    """The manifest of an installed custom dataset (``DatasetError`` when it is not one)."""
    if not base.is_custom(name):
        raise base.DatasetError(f"{name!r} is not an installed custom dataset")
    return base.read_manifest(name) or {}


def class_names(name: str) -> list[str]:
    """The class labels of a custom dataset, in label order."""
    return list(read_manifest(name).get("class_names", []))


def plan_split(name: str, split: str, split_seed: int = SPLIT_SEED) -> tuple[list[str], np.ndarray]:
    """Chooses the files of one split without decoding.

    Validation takes ``round(VALID_FRACTION * n)`` images of each class (at least one), drawn
    with a generator seeded by ``split_seed``; train takes the rest.

    Returns:
        ``(file_names relative to the images folder, labels)``, sorted by label then name.
    """
    base.check_split(name, split, SPLITS)
    root = base.dataset_dir(name) / PART
    rng = np.random.default_rng([int(split_seed), 16])
    files, labels = [], []
    for label, class_name in enumerate(class_names(name)):
        folder = root / class_name
        members = sorted(path.name for path in folder.iterdir() if path.is_file()) if folder.is_dir() else []
        valid_count = max(1, int(round(VALID_FRACTION * len(members)))) if len(members) > 1 else 0
        order = rng.permutation(len(members))
        chosen = order[:valid_count] if split == "val" else order[valid_count:]
        for index in sorted(chosen):
            files.append(f"{class_name}/{members[index]}")
            labels.append(label)
    return files, np.array(labels, dtype=np.int64)


def load_split(name: str, split: str, image_size: int = NATURAL_IMAGE_SIZE, *,
               split_seed: int = SPLIT_SEED, use_cache: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decodes one split (or reads it from the disk cache).

    Returns:
        ``(images uint8 N x S x S x 3, labels int64, file_names)``.
    """
    from core.datasets import dogs_vs_cats

    manifest = read_manifest(name)
    fingerprint = manifest.get("parts", {}).get(PART, {}).get("fingerprint", "")
    key = cache.cache_key(dataset=name, kind=base.CUSTOM_KIND, fingerprint=fingerprint, split=split,
                          image_size=image_size, split_seed=int(split_seed),
                          valid_fraction=VALID_FRACTION)
    path = cache.cache_path(name, split, image_size, key)
    if use_cache:
        cached = cache.load(path)
        if cached is not None:
            return cached["images"], cached["labels"].astype(np.int64), cached["file_names"].tolist()
    files, labels = plan_split(name, split, split_seed)
    root = base.dataset_dir(name) / PART
    images = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    keep = []
    for index, file_name in enumerate(files):
        decoded = dogs_vs_cats.decode(root / file_name, image_size)
        if decoded is not None:
            images[len(keep)] = decoded
            keep.append(index)
    images, labels = images[: len(keep)], labels[keep]
    files = [files[index] for index in keep]
    if use_cache:
        cache.save(path, images=images, labels=labels, file_names=np.array(files, dtype=str))
    return images, labels, files


def split_summary(name: str, split_seed: int = SPLIT_SEED) -> dict:
    """Counts per split and class without decoding, plus the images per class and skipped files."""
    manifest = read_manifest(name)
    entry = manifest.get("parts", {}).get(PART, {})
    names = class_names(name)
    summary = {"counts": {}, "source_counts": {"all": entry.get("counts", {})},
               "skipped": entry.get("skipped", {})}
    for split in SPLITS:
        _, labels = plan_split(name, split, split_seed)
        summary["counts"][split] = np.bincount(labels, minlength=len(names)).astype(int).tolist()
    return summary


def delete_bottleneck_caches(name: str) -> int:
    """Removes the bottleneck feature caches computed on a custom dataset (their folder names
    read ``<backbone>-<name>-<size>px-k<copies>-<digest>``), so that a later dataset with the
    same name never reuses them. Returns the bytes freed."""
    from core.training import bottleneck

    pattern = re.compile(rf"^[a-z0-9]+-{re.escape(name)}-\d+px-k\d+-[0-9a-f]+$")
    root = bottleneck.cache_root()
    freed = 0
    if root.is_dir():
        for child in root.iterdir():
            if pattern.match(child.name):
                freed += base.folder_size(child)
                base.remove_tree(child)
    return freed
