"""The logic of the "Your own classes" page (Teachable-Machine style), without Streamlit.

A *collection* is what a student builds on the page: an ordered list of classes, each a label
and a list of images (``ImageEntry``: a unique file name and the encoded bytes). Pressing Train

1. turns the collection into a custom dataset under the data root with a unique name
   (``core.datasets.custom``; an unchanged collection reuses its dataset, so the backbone's
   features are computed once and read from the bottleneck cache afterwards);
2. submits a normal training job (``core.jobs.submit``): MobileNetV2 feature extraction on the
   best installed ImageNet backbone. The run shows up on the Runs, Compare and Classify pages.

``seconds_to_usable_model`` measures the time from pressing Train to the run's end.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from core import imaging, runs
from core.datasets import base, custom

DATASET_PREFIX = "own"
DEFAULT_LABELS = ("Class 1", "Class 2")
MIN_CLASSES = custom.MIN_CLASSES
MIN_IMAGES_PER_CLASS = custom.MIN_IMAGES_PER_CLASS
MAX_CLASSES = 10
MAX_IMAGES_PER_CLASS = 200
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # one snapshot or upload
BACKBONE = "mobilenetv2"
BACKBONES = ("mobilenetv2", "mobilenet")  # best first: MobileNetV2 1.0 is the more accurate
IMAGENET_WEIGHTS = "imagenet"
IMAGE_SIZE = 224
TARGET_SECONDS = 30.0
# A linear-ish head on pooled ImageNet features: a few epochs of Adam are enough.
TRAINING_SETTINGS = {
    "strategy": "feature-extraction",
    "image_size": IMAGE_SIZE,
    "epochs": 6,
    "batch_size": 16,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "head_units": 128,
    "dropout": 0.2,
    "augmentation": {},
    "bottleneck": True,
    "experiment": "own-classes",
}


@dataclass
class ImageEntry:
    """One image of a class: a unique file name and the file's bytes."""

    file_name: str
    data: bytes


@dataclass
class OwnClass:
    """One class of a collection.

    Attributes:
        label: the class name (validated by ``core.datasets.custom.check_label`` at Train).
        images: its images, in the order they were added.
        class_id: a stable id for widget keys (labels can be renamed).
        seen: ids of uploads/snapshots already added (a rerun never adds one twice).
    """

    label: str
    class_id: int
    images: list[ImageEntry] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


def new_collection() -> list[OwnClass]:
    """Two empty classes, as Teachable Machine starts."""
    return [OwnClass(label=label, class_id=index) for index, label in enumerate(DEFAULT_LABELS)]


def add_class(collection: list[OwnClass], label: str) -> OwnClass:
    """Appends a class; returns it.

    Raises:
        ValueError: a bad label (path characters, too long), a label already used, or more
            than ``MAX_CLASSES`` classes.
    """
    label = custom.check_label(label)
    if len(collection) >= MAX_CLASSES:
        raise ValueError(f"at most {MAX_CLASSES} classes on this page, received one more")
    if label.lower() in {item.label.lower() for item in collection}:
        raise ValueError(f"there is already a class named {label!r}; choose another label")
    next_id = max((item.class_id for item in collection), default=-1) + 1
    created = OwnClass(label=label, class_id=next_id)
    collection.append(created)
    return created


def add_image(own_class: OwnClass, data: bytes, source_id: str, kind: str = "image") -> bool:
    """Adds one snapshot or upload to a class once (checked by decoding it).

    Args:
        own_class: the class.
        data: the file's bytes.
        source_id: the widget's id of this file (Streamlit's ``file_id``); a file seen before is
            not added again.
        kind: a word for the file name (``"snapshot"``, ``"upload"``).

    Returns:
        True when the image was added, False when it was seen before.

    Raises:
        core.imaging.ImageError: the file is too large or not a decodable image.
        ValueError: the class already has ``MAX_IMAGES_PER_CLASS`` images.
    """
    if source_id in own_class.seen:
        return False
    if len(own_class.images) >= MAX_IMAGES_PER_CLASS:
        raise ValueError(f"class {own_class.label!r} already has {MAX_IMAGES_PER_CLASS} images, "
                         "the most this page keeps")
    imaging.read_image(data, max_bytes=MAX_IMAGE_BYTES)
    own_class.seen.add(source_id)
    digest = hashlib.sha256(data).hexdigest()[:12]
    own_class.images.append(ImageEntry(f"{kind}-{len(own_class.images) + 1:03d}-{digest}", bytes(data)))
    return True


def problems(collection: list[OwnClass]) -> list[str]:
    """What still stops training (empty when the collection can be trained)."""
    found = []
    if len(collection) < MIN_CLASSES:
        found.append(f"add at least {MIN_CLASSES} classes")
    for own_class in collection:
        if len(own_class.images) < MIN_IMAGES_PER_CLASS:
            found.append(f"{own_class.label!r} needs at least {MIN_IMAGES_PER_CLASS} images "
                         f"(has {len(own_class.images)})")
    return found


def collection_digest(collection: list[OwnClass]) -> str:
    """A digest of labels and image bytes: equal digests mean the same dataset."""
    digest = hashlib.sha256()
    for own_class in collection:
        digest.update(own_class.label.encode("utf-8") + b"\0")
        for entry in own_class.images:
            digest.update(hashlib.sha256(entry.data).digest())
    return digest.hexdigest()


def new_dataset_name(now: float | None = None) -> str:
    """A unique custom dataset name: ``own-YYYYMMDD-HHMMSS-<6 hex>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{DATASET_PREFIX}-{stamp}-{secrets.token_hex(3)}"


def create_dataset(collection: list[OwnClass], title: str | None = None) -> str:
    """Writes the collection as a new custom dataset; returns its name.

    Raises:
        core.datasets.DatasetError: what ``custom.create`` refuses (too few images...).
    """
    name = new_dataset_name()
    classes = {own_class.label: [(entry.file_name, entry.data) for entry in own_class.images]
               for own_class in collection}
    custom.create(name, classes, title=title or f"Your own classes ({', '.join(classes)})")
    return name


def dataset_for(collection: list[OwnClass], previous: dict | None) -> tuple[str, bool]:
    """The dataset to train on: the previous one when the collection did not change.

    Args:
        collection: the classes and images.
        previous: ``{"digest": ..., "dataset": ...}`` from the last Train, or None.

    Returns:
        ``(dataset name, reused)``.
    """
    digest = collection_digest(collection)
    if previous and previous.get("digest") == digest and base.is_custom(previous.get("dataset")):
        return previous["dataset"], True
    return create_dataset(collection), False


def best_backbone() -> tuple[str | None, str]:
    """The best backbone whose ImageNet (no-top) weights are installed, without downloading.

    Returns:
        ``(backbone, description)``; ``(None, how to install weights)`` when none is installed.
    """
    from core import weights

    for backbone in BACKBONES:
        entry = weights.installed(backbone, weights.NO_TOP)
        if entry:
            return backbone, f"{backbone} ImageNet weights ({Path(entry['path']).name})"
    return None, (f"No ImageNet weights are installed for {' or '.join(BACKBONES)}. Import a "
                  f"Keras weights file with `python -m core.weights get {BACKBONE} --from FILE` or "
                  "on the Datasets page (weights section), then press Train.")


def training_config(dataset: str, backbone: str = BACKBONE, weights: str = IMAGENET_WEIGHTS) -> dict:
    """The job's config: feature extraction with ``backbone`` on ``dataset``.

    Args:
        dataset: the custom dataset's name.
        backbone: ``mobilenetv2`` (default) or ``mobilenet``.
        weights: a ``weights`` setting; default ``"imagenet"`` (the installed file, offline).
    """
    return dict(TRAINING_SETTINGS, model=backbone, dataset=dataset, weights=weights)


def seconds_to_usable_model(pressed_at: float, status: dict) -> float | None:
    """Seconds from pressing Train (epoch seconds) to the run's end; None while it runs."""
    if status.get("state") != runs.COMPLETED:
        return None
    ended = runs.parse_time(status.get("ended_at"))
    if ended is None:
        return None
    return max(0.0, ended.timestamp() - pressed_at)


def utc_text(seconds: float) -> str:
    """Epoch seconds as an ISO UTC time (for captions)."""
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%H:%M:%S UTC")
