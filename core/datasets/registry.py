"""The registry: every dataset behind one interface (facts, status, disk use, counts, delete).

``DATASET_NAMES`` lists the built-in ones and ``dataset_names()`` adds the installed custom
datasets (``core.datasets.custom``); ``get_info(name)`` gives title, class names, natural image size,
splits and whether the data is synthetic; ``status(name)`` is one of ``STATUSES``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from core.datasets import base, cache, custom, dogs_vs_cats, gtsrb, progress, signs, synthetic_signs

DATASET_NAMES = base.DATASET_NAMES
STATUSES = ("absent", "downloading", "ready", "broken")


def dataset_names() -> tuple[str, ...]:
    """The built-in datasets, then the installed custom ones (read from the data root now)."""
    return base.dataset_names()


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset (class names follow what is installed for dogs-vs-cats).

    Attributes:
        name: registry name, e.g. ``"gtsrb"``.
        title: human title (synthetic data says so).
        class_names: names in label order.
        natural_image_size: the default ``image_size`` of ``load``.
        splits: the splits ``load`` accepts.
        synthetic: True for generated data.
        description: one paragraph for the page.
        sources: human descriptions of where the data comes from.
        downloadable: whether ``get`` without ``--from`` can fetch it.
    """

    name: str
    title: str
    class_names: list[str]
    natural_image_size: int
    splits: tuple[str, ...]
    synthetic: bool
    description: str
    sources: tuple[str, ...] = field(default_factory=tuple)
    downloadable: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __getitem__(self, key: str):
        """Dict-style access (``info["title"]``) for callers that treat it as a mapping."""
        return getattr(self, key)

    def to_dict(self) -> dict:
        return asdict(self)


def get_info(name: str) -> DatasetInfo:
    """Facts about one dataset; raises ``DatasetError`` for an unknown name."""
    base.check_name(name)
    if base.is_custom(name):
        manifest = custom.read_manifest(name)
        counts = manifest.get("parts", {}).get(custom.PART, {}).get("counts", {})
        return DatasetInfo(
            name=name,
            title=manifest.get("title") or f"Custom dataset {name}",
            class_names=list(manifest.get("class_names", [])),
            natural_image_size=custom.NATURAL_IMAGE_SIZE,
            splits=custom.SPLITS,
            synthetic=False,
            description=(
                f"Your own images: {sum(counts.values()):,} in {len(counts)} classes, created "
                f"{manifest.get('created_at', '')}. Validation takes "
                f"{custom.VALID_FRACTION:.0%} of each class (seeded)."
            ),
            sources=("created with `python -m core.datasets create` or the Your own classes page",),
            downloadable=False,
        )
    if name == "gtsrb":
        manifest = base.read_manifest(name) or {}
        has_test = "test" in manifest.get("parts", {})
        return DatasetInfo(
            name=name,
            title=gtsrb.TITLE,
            class_names=list(signs.CLASS_NAMES),
            natural_image_size=gtsrb.NATURAL_IMAGE_SIZE,
            splits=("train", "val", "test") if has_test else ("train", "val"),
            synthetic=False,
            description=(
                "43 classes of German traffic signs, photographed from a car: 39,209 training "
                "images (1,307 tracks of up to 30 frames of one sign) and 12,630 test images. "
                "Validation is split off by whole tracks (about 11% per class)."
            ),
            sources=tuple(gtsrb.BASE_URL + file_name for file_name in gtsrb.OFFICIAL_FILES),
        )
    if name == "dogs-vs-cats":
        return DatasetInfo(
            name=name,
            title=dogs_vs_cats.TITLE,
            class_names=dogs_vs_cats.class_names(),
            natural_image_size=dogs_vs_cats.NATURAL_IMAGE_SIZE,
            splits=dogs_vs_cats.available_splits(),
            synthetic=False,
            description=(
                "Photos of cats and dogs (Kaggle 2013, from Microsoft's Asirra). The study trains "
                "on 2,000 and validates on 500 at 224x224. Any folder-per-class image set can be "
                "imported in its place."
            ),
            sources=tuple(dogs_vs_cats.URLS.values()),
        )
    return DatasetInfo(
        name=name,
        title="Synthetic traffic signs (SYNTHETIC, generated)",
        class_names=list(signs.CLASS_NAMES),
        natural_image_size=synthetic_signs.NATURAL_IMAGE_SIZE,
        splits=("train", "val", "test"),
        synthetic=True,
        description=(
            "SYNTHETIC images drawn with OpenCV: GTSRB's 43 classes with their shapes, colours, "
            "numerals and pictograms, under random perspective, lighting, blur, noise and "
            "backgrounds. Always available (generated on first use, then cached); much easier "
            "than real photos, so never compare its accuracy with GTSRB's."
        ),
        sources=("generated on this machine (core/datasets/synthetic_signs.py)",),
        downloadable=False,
    )


def status_details(name: str) -> dict:
    """``{"status": one of STATUSES, "reason": str, "progress": dict | None}``."""
    base.check_name(name)
    record = progress.read(name)
    if record and record.get("state") == "running":
        return {"status": "downloading", "reason": record.get("phase", ""), "progress": record}
    if name == "synthetic-signs":
        return {"status": "ready", "reason": "generated on demand", "progress": record}
    folder = base.dataset_dir(name)
    manifest = base.read_manifest(name)
    if manifest is None:
        leftovers = [child.name for child in folder.iterdir()] if folder.is_dir() else []
        leftovers = [child for child in leftovers if child != base.CACHE_FOLDER]
        if leftovers:
            return {"status": "broken", "reason": f"files without a readable manifest: {leftovers[:5]}",
                    "progress": record}
        return {"status": "absent", "reason": "not installed", "progress": record}
    parts = manifest.get("parts", {})
    missing = [part for part in parts if not (folder / part).is_dir()]
    if missing:
        return {"status": "broken", "reason": f"installed part(s) missing on disk: {missing}",
                "progress": record}
    required = "train" if name == "gtsrb" else custom.PART if base.is_custom(name) else dogs_vs_cats.PART
    if required not in parts:
        return {"status": "broken", "reason": "the training set is not installed", "progress": record}
    return {"status": "ready", "reason": "", "progress": record}


def status(name: str) -> str:
    """``"absent"``, ``"downloading"`` (also while importing), ``"ready"`` or ``"broken"``."""
    return status_details(name)["status"]


def is_available(name: str) -> bool:
    """True when ``load(name, "train")`` can work (synthetic-signs always can)."""
    return status(name) == "ready"


def disk_usage(name: str) -> dict:
    """Bytes on disk: ``{"data": ..., "cache": ..., "total": ...}``."""
    folder = base.dataset_dir(name)
    total = base.folder_size(folder)
    cached = base.folder_size(base.cache_dir(name))
    return {"data": total - cached, "cache": cached, "total": total}


def split_counts(name: str) -> dict:
    """Images per split and class with default parameters, without decoding.

    Returns:
        ``{"class_names": [...], "counts": {split: [per-class counts]}, ...}``; empty counts when
        the dataset is not ready. GTSRB adds ``"tracks"`` (train/val/shared track counts),
        dogs-vs-cats ``"source_counts"`` and ``"skipped"``.
    """
    info = get_info(name)
    result = {"class_names": info.class_names, "counts": {}}
    if name == "synthetic-signs":
        result["counts"] = {split: [synthetic_signs.default_count(split)] * signs.NUM_CLASSES
                            for split in info.splits}
        return result
    if status(name) != "ready":
        return result
    if name == "gtsrb":
        result.update(gtsrb.split_summary())
    elif base.is_custom(name):
        result.update(custom.split_summary(name))
    else:
        result.update(dogs_vs_cats.split_summary())
    return result


def delete(name: str) -> int:
    """Deletes a dataset's files and caches; returns the bytes freed.

    Raises:
        DatasetError: while a download/import of it is running, or while a queued or running
            training job uses it (the jobs are named).
    """
    base.check_name(name)
    if progress.is_running(name):
        raise base.DatasetError(f"{name} is being downloaded/imported right now; wait for it to finish")
    from core import jobs

    users = jobs.active_runs_using_dataset(name)
    if users:
        raise base.DatasetError(
            f"{name} is used by {len(users)} queued or running training job(s): {', '.join(users)}; "
            "cancel them or wait for them to finish before deleting it"
        )
    folder = base.dataset_dir(name)
    freed = base.folder_size(folder)
    if base.is_custom(name):
        freed += custom.delete_bottleneck_caches(name)
    if name == "synthetic-signs":
        cache.clear(name)
    progress.clear(name)  # first: a custom dataset's name stops being valid with its folder
    base.remove_tree(folder)
    return freed
