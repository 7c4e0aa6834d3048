"""Dogs vs Cats (``dogs-vs-cats``), or any folder-per-class image set: import, subsample, decode.

Sources:

* (a) ``cats_and_dogs_filtered.zip`` (Google's 3,000-image subset):
  ``cats_and_dogs_filtered/{train,validation}/{cats,dogs}/*.jpg``; its validation folder is used.
* (b) Microsoft's ``kagglecatsanddogs_5340.zip``: ``PetImages/{Cat,Dog}/*.jpg`` with ~1,700 files
  that do not decode and some ``Thumbs.db``: they are skipped and counted.
* (c) Kaggle's flat ``train.zip``: ``train/cat.N.jpg``, ``train/dog.N.jpg`` (label = prefix).
* (d) any folder-per-class tree: ``<class>/*.jpg``, optionally under ``train/``,
  ``validation/`` (or ``val/``, ``valid/``) and ``test/``; two or more classes.

Installed under ``<root>/dogs-vs-cats/images/<split>/<class>/<file>`` with ``split`` in
``train``, ``validation``, ``test``. Class folders ``cats``/``Cat`` become ``cat`` (and dogs
alike), so labels are ``cat = 0``, ``dog = 1`` whatever the source.

Subsampling (seeded, stratified, deterministic): validation first, ``valid_size`` images (from
the source's own validation folder when it has one, else from the training images), then train
gets ``train_size`` of the rest. From 2,000 Kaggle images with the study's defaults 2,000/500
that is 1,500 train and 500 validation. Without a validation folder, validation never takes
more than half of the images.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from core import imaging
from core.datasets import base, cache, sources
from core.imaging import DECODE_ERRORS

NAME = "dogs-vs-cats"
TITLE = "Dogs vs Cats (Kaggle / Microsoft)"
NATURAL_IMAGE_SIZE = 224
DEFAULT_CLASS_NAMES = ("cat", "dog")
TRAIN_SIZE = 2000
VALID_SIZE = 500
SPLIT_SEED = 0
PART = "images"
SPLIT_FOLDERS = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                 "valid": "validation", "test": "test", "testing": "test"}
UNLABELLED_FOLDERS = ("test1",)  # Kaggle's unlabelled test images
FLAT_PATTERN = re.compile(r"^([A-Za-z]+)\.\d+\.\w+$")
CLASS_ALIASES = {"cats": "cat", "dogs": "dog"}
FORMAT_VERSION = 1
CHECK_SIZE = 64  # decode at reduced size at import: fast, and still reads every byte
URLS = {
    "filtered": "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
    "microsoft": "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip",
}
OFFICIAL_FILES = {
    "cats_and_dogs_filtered.zip": {"sha256": None, "size": 68606236, "pin": True},
    "kagglecatsanddogs_5340.zip": {
        "sha256": "b7974bd00a84a99921f36ee4403f089853777b5ae8d151c76a86e64900334af9",
        "size": 824887076,
        "pin": False,
    },
}


def _class_name(folder: str) -> str:
    lowered = folder.strip().lower()
    return CLASS_ALIASES.get(lowered, lowered)


def _label(name: str) -> tuple[str, str] | None:
    """``(split, class)`` for an image path, or ``None`` when it carries no label."""
    parts = name.split("/")
    file_name = parts[-1]
    parent = parts[-2] if len(parts) >= 2 else ""
    if parent.lower() in UNLABELLED_FOLDERS:
        return None
    if not parent or parent.lower() in SPLIT_FOLDERS:
        match = FLAT_PATTERN.match(file_name)
        if not match:
            return None
        return SPLIT_FOLDERS.get(parent.lower(), "train"), _class_name(match.group(1))
    grandparent = parts[-3].lower() if len(parts) >= 3 else ""
    return SPLIT_FOLDERS.get(grandparent, "train"), _class_name(parent)


def check_image(data: bytes) -> np.ndarray | None:
    """Decodes image bytes quickly at reduced size; ``None`` when they do not decode.

    Decoding goes through ``core.imaging.read_image``: corrupt files, non-images and
    decompression bombs (too many pixels) all count as "does not decode".
    """
    if not data:
        return None
    try:
        image = imaging.read_image(data, max_bytes=sources.MAX_MEMBER_BYTES, draft_size=CHECK_SIZE)
    except imaging.ImageError:
        return None
    return np.asarray(image)


def install(paths, progress=None) -> dict:
    """Imports Dogs vs Cats (or any folder-per-class set) from zips or folders.

    Args:
        paths: zips or folders in layouts (a)-(d) of the module docstring; several are merged.
        progress: optional ``callback(phase, done, total)``.

    Returns:
        The new manifest (class names, counts per split and class, skipped files).

    Raises:
        DatasetError: no labelled images, a single class, a damaged zip, a full disk...
            The installed data is unchanged then.
    """
    opened = sources.open_sources(paths)
    try:
        plan = []  # (source, member, split, class, file_name)
        skipped = {"non_image_files": 0, "undecodable_images": 0, "unlabelled_images": 0,
                   "duplicates": 0}
        skipped_examples: list[str] = []
        seen = set()
        for source in opened:
            for name in source.names:
                if sources.is_ignored(name) or not sources.is_image_name(name):
                    skipped["non_image_files"] += 1
                    continue
                label = _label(name)
                if label is None:
                    skipped["unlabelled_images"] += 1
                    continue
                split, class_name = label
                file_name = name.rsplit("/", 1)[-1]
                key = (split, class_name, file_name)
                if key in seen:
                    skipped["duplicates"] += 1
                    continue
                seen.add(key)
                plan.append((source, name, split, class_name, file_name))
        where = ", ".join(str(source.path) for source in opened)
        if not plan:
            raise base.DatasetError(
                f"no labelled images found in {where} ({skipped['non_image_files']} non-image "
                f"file(s), {skipped['unlabelled_images']} unlabelled image(s)); expected "
                "train/cat.N.jpg files or one folder of images per class"
            )
        class_names = sorted({entry[3] for entry in plan})
        if len(class_names) < 2:
            raise base.DatasetError(
                f"only one class ({class_names[0]!r}) found in {where}; a classifier needs at "
                "least two class folders"
            )
        counts: dict[str, dict[str, int]] = {}
        with sources.StagedInstall(NAME) as staged:
            for done, (source, member, split, class_name, file_name) in enumerate(plan, start=1):
                data = source.read(member)
                if check_image(data) is None:
                    skipped["undecodable_images"] += 1
                    if len(skipped_examples) < 5:
                        skipped_examples.append(member)
                else:
                    staged.write(PART, f"{split}/{class_name}/{file_name}", data)
                    split_counts = counts.setdefault(split, {})
                    split_counts[class_name] = split_counts.get(class_name, 0) + 1
                if progress is not None and (done % sources.PROGRESS_EVERY_FILES == 0 or done == len(plan)):
                    progress("check and extract images", done, len(plan))
            if not counts:
                raise base.DatasetError(
                    f"none of the {len(plan)} images in {where} can be decoded (e.g. "
                    f"{skipped_examples[:2]}); the files are damaged or not images"
                )
            if "train" not in counts:
                raise base.DatasetError(
                    f"{where} has no training images (only {sorted(counts)}); expected a train "
                    "folder or class folders at the top"
                )
            class_names = sorted({name for split in counts.values() for name in split})
            if len(class_names) < 2:
                raise base.DatasetError(f"only one class with decodable images in {where}: {class_names}")
            fingerprint = "".join(source.fingerprint() for source in opened)
            manifest = {
                "dataset": NAME,
                "format": FORMAT_VERSION,
                "class_names": class_names,
                "parts": {PART: {
                    "sources": [str(source.path) for source in opened],
                    "fingerprint": fingerprint,
                    "installed_at": sources.now_iso(),
                    "counts": counts,
                    "num_images": sum(sum(split.values()) for split in counts.values()),
                    "skipped": skipped,
                    "skipped_examples": skipped_examples,
                }},
            }
            staged.commit(manifest)
        return manifest
    finally:
        for source in opened:
            source.close()


def class_names() -> list[str]:
    """The installed class names (``["cat", "dog"]`` when nothing is installed)."""
    manifest = base.read_manifest(NAME) or {}
    return list(manifest.get("class_names") or DEFAULT_CLASS_NAMES)


def available_splits() -> tuple[str, ...]:
    """``("train", "val")`` plus ``"test"`` when the installed source has a labelled test folder."""
    manifest = base.read_manifest(NAME) or {}
    counts = manifest.get("parts", {}).get(PART, {}).get("counts", {})
    return ("train", "val", "test") if "test" in counts else ("train", "val")


def _listing(split_folder: str, names: list[str]) -> tuple[list[str], np.ndarray]:
    """Relative file names (``class/file``) and labels of one installed split folder."""
    root = base.dataset_dir(NAME) / PART / split_folder
    files, labels = [], []
    for label, class_name in enumerate(names):
        folder = root / class_name
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file():
                files.append(f"{class_name}/{path.name}")
                labels.append(label)
    return files, np.array(labels, dtype=np.int64)


def _stratified_pick(labels: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``total`` items drawn per class in proportion (seeded)."""
    counts = {int(label): int(count) for label, count in zip(*np.unique(labels, return_counts=True))}
    wanted = base.stratified_counts(counts, total)
    picked = []
    for label in sorted(counts):
        members = np.flatnonzero(labels == label)
        picked.append(rng.permutation(members)[: wanted[label]])
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)


def plan_split(split: str, train_size: int = TRAIN_SIZE, valid_size: int = VALID_SIZE,
               split_seed: int = SPLIT_SEED) -> tuple[str, list[str], np.ndarray]:
    """Chooses the files of one split without decoding.

    Returns:
        ``(split_folder, file_names, labels)`` with file names relative to the split folder.
    """
    names = class_names()
    manifest = base.read_manifest(NAME) or {}
    counts = manifest.get("parts", {}).get(PART, {}).get("counts", {})
    if split == "test":
        files, labels = _listing("test", names)
        return "test", files, labels
    rng = np.random.default_rng([int(split_seed), 2000, 500])
    train_files, train_labels = _listing("train", names)
    if "validation" in counts:
        val_files, val_labels = _listing("validation", names)
        val_pick = _stratified_pick(val_labels, valid_size, rng)
        if split == "val":
            return "validation", [val_files[i] for i in val_pick], val_labels[val_pick]
        train_pick = _stratified_pick(train_labels, train_size, rng)
        return "train", [train_files[i] for i in train_pick], train_labels[train_pick]
    # Validation first, but never more than half of the images (a tiny set still trains).
    val_pick = _stratified_pick(train_labels, min(valid_size, len(train_files) // 2), rng)
    if split == "val":
        return "train", [train_files[i] for i in val_pick], train_labels[val_pick]
    rest = np.setdiff1d(np.arange(len(train_files)), val_pick)
    train_pick = rest[_stratified_pick(train_labels[rest], train_size, rng)]
    return "train", [train_files[i] for i in train_pick], train_labels[train_pick]


def decode(path: Path, image_size: int) -> np.ndarray | None:
    """Reads one image as image_size x image_size RGB uint8 (squashed, as Keras'
    ``flow_from_directory`` does); ``None`` when it does not decode."""
    import cv2

    try:
        data = Path(path).read_bytes()
        image = imaging.read_image(data, max_bytes=sources.MAX_MEMBER_BYTES, draft_size=image_size)
    except (OSError, imaging.ImageError):
        return None
    array = np.asarray(image)
    height, width = array.shape[:2]
    interpolation = cv2.INTER_AREA if (height > image_size or width > image_size) else cv2.INTER_LINEAR
    return cv2.resize(array, (image_size, image_size), interpolation=interpolation)


def load_split(split: str, image_size: int = NATURAL_IMAGE_SIZE, *, train_size: int = TRAIN_SIZE,
               valid_size: int = VALID_SIZE, split_seed: int = SPLIT_SEED,
               use_cache: bool = True) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Decodes one subsampled split (or reads it from the disk cache).

    Returns:
        ``(images uint8 N x S x S x 3, labels int64, file_names, num_undecodable)``.
    """
    manifest = base.read_manifest(NAME) or {}
    entry = manifest.get("parts", {}).get(PART)
    if entry is None:
        raise base.DatasetError(
            "Dogs vs Cats is not installed; run `python -m core.datasets get dogs-vs-cats` "
            "(download) or `... get dogs-vs-cats --from train.zip`, or use the Datasets page"
        )
    for label, value in (("train_size", train_size), ("valid_size", valid_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise base.DatasetError(f"{label} must be a positive int, received {value!r}")
    key = cache.cache_key(dataset=NAME, fingerprint=entry["fingerprint"], split=split,
                          image_size=image_size, train_size=int(train_size),
                          valid_size=int(valid_size), split_seed=int(split_seed))
    path = cache.cache_path(NAME, split, image_size, key)
    if use_cache:
        cached = cache.load(path)
        if cached is not None:
            return (cached["images"], cached["labels"].astype(np.int64), cached["file_names"].tolist(),
                    int(cached["num_undecodable"]))
    folder, files, labels = plan_split(split, train_size, valid_size, split_seed)
    root = base.dataset_dir(NAME) / PART / folder
    images = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    keep = []
    for index, file_name in enumerate(files):
        decoded = decode(root / file_name, image_size)
        if decoded is not None:
            images[len(keep)] = decoded
            keep.append(index)
    undecodable = len(files) - len(keep)
    images = images[: len(keep)]
    labels = labels[keep]
    files = [files[index] for index in keep]
    if use_cache:
        cache.save(path, images=images, labels=labels, file_names=np.array(files, dtype=str),
                   num_undecodable=np.array(undecodable))
    return images, labels, files, undecodable


def split_summary(train_size: int = TRAIN_SIZE, valid_size: int = VALID_SIZE,
                  split_seed: int = SPLIT_SEED) -> dict:
    """Counts per split and class (after subsampling) without decoding, plus the source's
    own counts and skipped files."""
    manifest = base.read_manifest(NAME) or {}
    entry = manifest.get("parts", {}).get(PART)
    if entry is None:
        return {"counts": {}}
    names = class_names()
    summary = {"counts": {}, "source_counts": entry.get("counts", {}), "skipped": entry.get("skipped", {})}
    for split in available_splits():
        _, _, labels = plan_split(split, train_size, valid_size, split_seed)
        summary["counts"][split] = np.bincount(labels, minlength=len(names)).astype(int).tolist()
    return summary
