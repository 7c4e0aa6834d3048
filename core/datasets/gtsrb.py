"""GTSRB (``gtsrb``): import, track-aware split, decoding and caching.

Official files (https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/):

* ``GTSRB_Final_Training_Images.zip``: ``GTSRB/Final_Training/Images/000NN/TTTTT_FFFFF.ppm``
  plus ``GT-000NN.csv`` per class (``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``).
* ``GTSRB_Final_Test_Images.zip``: ``GTSRB/Final_Test/Images/NNNNN.ppm`` (its CSV has no ClassId).
* ``GTSRB_Final_Test_GT.zip``: ``GT-final_test.csv`` with ClassId.

Installed under ``<root>/gtsrb/``: ``train/000NN/{GT-000NN.csv, *.ppm}`` and
``test/{GT-final_test.csv, *.ppm}``. A local import checks the structure (every CSV row has its
image, every image decodes), not the MD5: repacked copies have other checksums.

Validation split: the official training set is 1,307 *tracks* of up to 30 frames of one physical
sign (``TTTTT`` in the file name). A random split puts frames of one sign in both halves, and
validation accuracy then measures memory, not generalisation (a plain LeNet: 98.3% on a random
split against 92.9% on the official test set). So whole tracks go to validation, per class
(stratified), about ``VALID_FRACTION`` of each class's images, chosen with ``split_seed``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import imaging
from core.datasets import base, cache, signs, sources

NAME = "gtsrb"
TITLE = "GTSRB: German Traffic Sign Recognition Benchmark"
NATURAL_IMAGE_SIZE = 32
VALID_FRACTION = 0.11
SPLIT_SEED = 0
NUM_TRAINING_IMAGES = 39209  # the official training set (train + val)
NUM_TEST_IMAGES = 12630
BASE_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
OFFICIAL_FILES = {
    "GTSRB_Final_Training_Images.zip": {"md5": "f33fd80ac59bff73c82d25ab499e03a3", "size": 276294756},
    "GTSRB_Final_Test_Images.zip": {"md5": "c7e4e6327067d32654124b0fe9e82185", "size": None},
    "GTSRB_Final_Test_GT.zip": {"md5": "fe31e9c9270bbcd7b84b7f21a9d9d9e5", "size": None},
}
CSV_COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2")
TEST_GT_NAME = "GT-final_test.csv"
TRAIN_CSV_PATTERN = re.compile(r"(?:^|/)(\d{5})/GT-(\d{5})\.csv$")
TEST_IMAGE_PATTERN = re.compile(r"(?:^|/)Final_Test/Images/([^/]+\.ppm)$", re.IGNORECASE)
TEST_GT_PATTERN = re.compile(r"(?:^|/)GT-final_test\.csv$")
TRACK_PATTERN = re.compile(r"^(\d+)_(\d+)\.\w+$")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Record:
    """One annotated image: where it is, its class, its original size and ROI."""

    file_name: str  # relative to the part folder, e.g. "00000/00000_00000.ppm" or "00000.ppm"
    class_id: int
    width: int
    height: int
    roi: tuple[int, int, int, int]  # x1, y1, x2, y2 in original pixels

    @property
    def track(self) -> str:
        """The physical sign: class folder + ``TTTTT`` (each file its own track if unnamed)."""
        stem = self.file_name.rsplit("/", 1)[-1]
        match = TRACK_PATTERN.match(stem)
        return f"{self.class_id:05d}/{match.group(1) if match else stem}"


def parse_csv(text: str, where: str, require_class: bool = True) -> list[dict]:
    """Parses a GTSRB semicolon CSV.

    Args:
        text: the CSV's text.
        where: a name for messages (e.g. the CSV's path).
        require_class: the ``ClassId`` column must be present.

    Returns:
        One dict per row with ``Filename`` (str) and int ``Width``, ``Height``, ``Roi.*``,
        ``ClassId`` (``None`` when absent).
    """
    reader = csv.DictReader(io.StringIO(text), delimiter=";")
    fields = [field.strip() for field in (reader.fieldnames or [])]
    missing = [column for column in CSV_COLUMNS if column not in fields]
    if require_class and "ClassId" not in fields:
        missing.append("ClassId")
    if missing:
        raise base.DatasetError(
            f"{where} is not a GTSRB annotation CSV: missing column(s) {missing}; expected "
            f"{';'.join(CSV_COLUMNS)};ClassId separated by semicolons"
        )
    rows = []
    for number, row in enumerate(reader, start=2):
        row = {key.strip(): (value or "").strip() for key, value in row.items() if key}
        if not row.get("Filename"):
            continue
        try:
            parsed = {"Filename": row["Filename"]}
            for column in CSV_COLUMNS[1:]:
                parsed[column] = int(row[column])
            parsed["ClassId"] = int(row["ClassId"]) if row.get("ClassId") not in (None, "") else None
        except (TypeError, ValueError):
            raise base.DatasetError(f"{where} line {number} has a non-integer value: {row}") from None
        rows.append(parsed)
    return rows


def _read_rgb(data: bytes) -> np.ndarray | None:
    """Decodes image bytes through ``core.imaging.read_image`` (bounded: size, pixels, corrupt
    files); ``None`` when they are not a usable image."""
    try:
        return np.asarray(imaging.read_image(data, max_bytes=sources.MAX_MEMBER_BYTES))
    except imaging.ImageError:
        return None


def _decodes(data: bytes) -> bool:
    return _read_rgb(data) is not None


def _classify(source: sources.SourceFiles) -> dict:
    """Finds the GTSRB parts inside one source: training class folders, test images, test GT."""
    found = {"train": {}, "test_images": {}, "test_gt": None, "test_csv": None}
    for name in source.names:
        match = TRAIN_CSV_PATTERN.search(name)
        if match and match.group(1) == match.group(2):
            found["train"][int(match.group(1))] = name
            continue
        match = TEST_IMAGE_PATTERN.search(name)
        if match:
            found["test_images"][match.group(1)] = name
            continue
        if TEST_GT_PATTERN.search(name):
            found["test_gt"] = name
        elif name.endswith("GT-final_test.test.csv"):
            found["test_csv"] = name
    return found


def _progress(progress, phase, done, total):
    if progress is not None:
        progress(phase, done, total)


def _stage_training(source, class_csvs, staged, progress) -> dict:
    """Checks and writes the training part; returns its manifest entry."""
    total_rows = 0
    plans = []
    for class_id, csv_name in sorted(class_csvs.items()):
        if not 0 <= class_id < signs.NUM_CLASSES:
            raise base.DatasetError(
                f"{source.path}: class folder {class_id:05d} is not a GTSRB class (expected 00000..00042)"
            )
        folder = csv_name.rsplit("/", 1)[0]
        text = source.read(csv_name).decode("utf-8", errors="replace")
        rows = parse_csv(text, f"{source.path}:{csv_name}")
        for row in rows:
            if row["ClassId"] != class_id:
                raise base.DatasetError(
                    f"{source.path}:{csv_name} row {row['Filename']} has ClassId {row['ClassId']} "
                    f"but lies in class folder {class_id:05d}"
                )
            member = f"{folder}/{row['Filename']}"
            if member not in source._sizes:
                raise base.DatasetError(
                    f"{source.path}: {csv_name} lists {row['Filename']} but that image is missing; "
                    "the archive is incomplete"
                )
        if not rows:
            raise base.DatasetError(f"{source.path}:{csv_name} lists no images")
        plans.append((class_id, folder, csv_name, text, rows))
        total_rows += len(rows)
    done = 0
    for class_id, folder, csv_name, text, rows in plans:
        prefix = f"{class_id:05d}"
        staged.write("train", f"{prefix}/GT-{prefix}.csv", text.encode("utf-8"))
        for row in rows:
            data = source.read(f"{folder}/{row['Filename']}")
            if not _decodes(data):
                raise base.DatasetError(
                    f"{source.path}: image {folder}/{row['Filename']} cannot be decoded (unreadable "
                    "or not an image); the archive is damaged"
                )
            staged.write("train", f"{prefix}/{row['Filename']}", data)
            done += 1
            if done % sources.PROGRESS_EVERY_FILES == 0:
                _progress(progress, "extract training images", done, total_rows)
    _progress(progress, "extract training images", done, total_rows)
    return {
        "num_images": total_rows,
        "num_classes": len(plans),
        "class_ids": [plan[0] for plan in plans],
    }


def _stage_test(image_source, images, gt_source, gt_name, staged, progress) -> dict:
    """Checks and writes the test part (images + labelled CSV); returns its manifest entry."""
    text = gt_source.read(gt_name).decode("utf-8", errors="replace")
    rows = parse_csv(text, f"{gt_source.path}:{gt_name}")
    by_name = {row["Filename"]: row for row in rows}
    unlabelled = sorted(set(images) - set(by_name))
    if unlabelled:
        raise base.DatasetError(
            f"{len(unlabelled)} test image(s) have no label in {gt_name} (e.g. {unlabelled[0]}); "
            "give the GT zip that matches these images"
        )
    bad = [row["ClassId"] for row in rows if not 0 <= row["ClassId"] < signs.NUM_CLASSES]
    if bad:
        raise base.DatasetError(f"{gt_name} has class ids outside 0..42: {sorted(set(bad))[:5]}")
    kept = [by_name[name] for name in sorted(images)]
    lines = [";".join(CSV_COLUMNS + ("ClassId",))]
    for row in kept:
        lines.append(";".join(str(row[column]) for column in CSV_COLUMNS + ("ClassId",)))
    staged.write("test", TEST_GT_NAME, ("\n".join(lines) + "\n").encode("utf-8"))
    for done, file_name in enumerate(sorted(images), start=1):
        data = image_source.read(images[file_name])
        if not _decodes(data):
            raise base.DatasetError(
                f"{image_source.path}: test image {file_name} cannot be decoded (unreadable or not an image)"
            )
        staged.write("test", file_name, data)
        if done % sources.PROGRESS_EVERY_FILES == 0:
            _progress(progress, "extract test images", done, len(images))
    _progress(progress, "extract test images", len(images), len(images))
    return {"num_images": len(kept), "num_unused_labels": len(rows) - len(kept)}


def install(paths, progress=None) -> dict:
    """Imports GTSRB from official zips, their extracted folders, or a folder of zips.

    Args:
        paths: one or more paths (the training zip; the test-images zip plus the test-GT zip;
            any of their extracted folders; a folder holding them).
        progress: optional ``callback(phase, done, total)``.

    Returns:
        The new manifest.

    Raises:
        DatasetError: nothing GTSRB-like in the sources, a damaged zip, a missing image, test
            images without labels, a full disk... The installed data is unchanged then.
    """
    opened = sources.open_sources(paths)
    try:
        training = None
        test_images = None
        test_gt = None
        for source in opened:
            found = _classify(source)
            if found["train"]:
                if training is not None:
                    raise base.DatasetError(
                        f"two training sets given ({training[0].path} and {source.path}); give one"
                    )
                training = (source, found["train"])
            if found["test_images"]:
                test_images = (source, found["test_images"])
            if found["test_gt"]:
                test_gt = (source, found["test_gt"])
        if training is None and test_images is None and test_gt is None:
            examples = [name for source in opened for name in source.names[:3]]
            raise base.DatasetError(
                f"no GTSRB files found in {', '.join(str(s.path) for s in opened)}: expected "
                "Final_Training/Images/000NN/GT-000NN.csv with its .ppm images, "
                "Final_Test/Images/*.ppm, or GT-final_test.csv; found e.g. "
                f"{examples[:3] if examples else 'nothing'}"
            )
        if test_images is not None and test_gt is None:
            raise base.DatasetError(
                "the test images need their labels: give GTSRB_Final_Test_GT.zip (GT-final_test.csv) "
                "together with GTSRB_Final_Test_Images.zip (repeat --from)"
            )
        if test_gt is not None and test_images is None:
            raise base.DatasetError(
                "GT-final_test.csv holds only labels: give it together with "
                "GTSRB_Final_Test_Images.zip (repeat --from)"
            )
        manifest = base.read_manifest(NAME) or {}
        parts = dict(manifest.get("parts", {})) if manifest.get("dataset") == NAME else {}
        with sources.StagedInstall(NAME) as staged:
            if training is not None:
                source, class_csvs = training
                entry = _stage_training(source, class_csvs, staged, progress)
                _progress(progress, "fingerprint training source", 0, None)
                entry.update(source=str(source.path), fingerprint=source.fingerprint(),
                             installed_at=sources.now_iso())
                parts["train"] = entry
            if test_images is not None:
                (image_source, images), (gt_source, gt_name) = test_images, test_gt
                entry = _stage_test(image_source, images, gt_source, gt_name, staged, progress)
                _progress(progress, "fingerprint test source", 0, None)
                fingerprint = image_source.fingerprint() + gt_source.fingerprint()
                entry.update(source=str(image_source.path), labels_source=str(gt_source.path),
                             fingerprint=fingerprint, installed_at=sources.now_iso())
                parts["test"] = entry
            manifest = {"dataset": NAME, "format": FORMAT_VERSION, "parts": parts}
            staged.commit(manifest)
        return manifest
    finally:
        for source in opened:
            source.close()


# --- installed data ----------------------------------------------------------------------------

def _part_dir(part: str) -> Path:
    return base.dataset_dir(NAME) / part


def training_records() -> list[Record]:
    """The installed training set (train + val), from the per-class CSVs, in a stable order."""
    folder = _part_dir("train")
    if not folder.is_dir():
        raise base.DatasetError(
            "GTSRB's training set is not installed; run `python -m core.datasets get gtsrb "
            "--from GTSRB_Final_Training_Images.zip` or download it on the Datasets page"
        )
    records = []
    for csv_path in sorted(folder.glob("*/GT-*.csv")):
        class_id = int(csv_path.parent.name)
        for row in parse_csv(csv_path.read_text(encoding="utf-8"), str(csv_path)):
            records.append(Record(f"{csv_path.parent.name}/{row['Filename']}", class_id,
                                  row["Width"], row["Height"],
                                  (row["Roi.X1"], row["Roi.Y1"], row["Roi.X2"], row["Roi.Y2"])))
    return records


def test_records() -> list[Record]:
    """The installed, labelled test set."""
    csv_path = _part_dir("test") / TEST_GT_NAME
    if not csv_path.is_file():
        raise base.DatasetError(
            "GTSRB's test set is not installed; import GTSRB_Final_Test_Images.zip together with "
            "GTSRB_Final_Test_GT.zip (python -m core.datasets get gtsrb --from A --from B)"
        )
    return [Record(row["Filename"], row["ClassId"], row["Width"], row["Height"],
                   (row["Roi.X1"], row["Roi.Y1"], row["Roi.X2"], row["Roi.Y2"]))
            for row in parse_csv(csv_path.read_text(encoding="utf-8"), str(csv_path))]


def track_split(records: list[Record], valid_fraction: float = VALID_FRACTION,
                split_seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Splits training records into train and validation by whole tracks, per class.

    For each class the tracks are shuffled with ``split_seed`` and taken into validation while
    that brings the class's validation count closer to ``valid_fraction`` of its images. A class
    with at least two tracks gives at least one track to validation and keeps at least one.

    Returns:
        ``(train_indices, val_indices)`` into ``records``, sorted.
    """
    if not 0 <= valid_fraction < 1:
        raise base.DatasetError(f"valid_fraction must be in [0, 1), received {valid_fraction!r}")
    by_class: dict[int, dict[str, list[int]]] = {}
    for index, record in enumerate(records):
        by_class.setdefault(record.class_id, {}).setdefault(record.track, []).append(index)
    val: list[int] = []
    for class_id, tracks in sorted(by_class.items()):
        names = sorted(tracks)
        order = np.random.default_rng([int(split_seed), class_id, 1307]).permutation(len(names))
        target = valid_fraction * sum(len(members) for members in tracks.values())
        taken, chosen = 0, []
        for position in order:
            size = len(tracks[names[position]])
            if abs(taken + size - target) < abs(taken - target):
                chosen.append(names[position])
                taken += size
        if valid_fraction > 0 and len(names) >= 2:
            if not chosen:
                chosen = [names[order[0]]]
            if len(chosen) == len(names):
                chosen = chosen[:-1]
        for name in chosen:
            val.extend(tracks[name])
    val_array = np.array(sorted(val), dtype=np.int64)
    train_array = np.setdiff1d(np.arange(len(records)), val_array)
    return train_array, val_array


def split_records(split: str, valid_fraction: float = VALID_FRACTION,
                  split_seed: int = SPLIT_SEED) -> list[Record]:
    """The records of one split (``train``/``val`` from the track split, or ``test``)."""
    if split == "test":
        return test_records()
    records = training_records()
    train, val = track_split(records, valid_fraction, split_seed)
    return [records[index] for index in (train if split == "train" else val)]


def _decode(path: Path, record: Record, image_size: int, roi_crop: bool) -> np.ndarray:
    try:
        image = _read_rgb(path.read_bytes())
    except OSError:
        image = None
    if image is None:
        raise base.DatasetError(f"{path} cannot be decoded; re-import GTSRB")
    if roi_crop:
        height, width = image.shape[:2]
        scale_x = width / max(record.width, 1)
        scale_y = height / max(record.height, 1)
        x1, y1, x2, y2 = record.roi
        left = int(np.clip(round(x1 * scale_x), 0, width - 1))
        top = int(np.clip(round(y1 * scale_y), 0, height - 1))
        right = int(np.clip(round((x2 + 1) * scale_x), left + 1, width))
        bottom = int(np.clip(round((y2 + 1) * scale_y), top + 1, height))
        image = image[top:bottom, left:right]
    return base.resize_square(image, image_size)


def load_split(split: str, image_size: int = NATURAL_IMAGE_SIZE, *, roi_crop: bool = False,
               valid_fraction: float = VALID_FRACTION, split_seed: int = SPLIT_SEED,
               use_cache: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decodes one split (or reads it from the disk cache).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: side of the square output images.
        roi_crop: crop each image to its annotated ROI first (the ROI is scaled by actual
            size / CSV size, since copies may be resized).
        valid_fraction: fraction of each class's training images (whole tracks) used for val.
        split_seed: seed of the track split.
        use_cache: read/write ``<root>/gtsrb/cache``.

    Returns:
        ``(images uint8 N x S x S x 3 RGB, labels int64 (class ids), file_names)``.
    """
    manifest = base.read_manifest(NAME) or {}
    part = "test" if split == "test" else "train"
    entry = manifest.get("parts", {}).get(part)
    if entry is None:
        what = "test set" if part == "test" else "training set"
        raise base.DatasetError(
            f"GTSRB's {what} is not installed (or its manifest is missing); import it with "
            "`python -m core.datasets get gtsrb --from PATH` or on the Datasets page"
        )
    key = cache.cache_key(dataset=NAME, fingerprint=entry["fingerprint"], split=split,
                          image_size=image_size, roi_crop=bool(roi_crop),
                          valid_fraction=None if split == "test" else float(valid_fraction),
                          split_seed=None if split == "test" else int(split_seed))
    path = cache.cache_path(NAME, split, image_size, key)
    if use_cache:
        cached = cache.load(path)
        if cached is not None:
            return cached["images"], cached["labels"].astype(np.int64), cached["file_names"].tolist()
    records = split_records(split, valid_fraction, split_seed)
    folder = _part_dir(part)
    images = np.empty((len(records), image_size, image_size, 3), dtype=np.uint8)
    for index, record in enumerate(records):
        images[index] = _decode(folder / record.file_name, record, image_size, roi_crop)
    labels = np.array([record.class_id for record in records], dtype=np.int64)
    file_names = [record.file_name for record in records]
    if use_cache:
        cache.save(path, images=images, labels=labels, file_names=np.array(file_names, dtype=str))
    return images, labels, file_names


def split_summary(valid_fraction: float = VALID_FRACTION, split_seed: int = SPLIT_SEED) -> dict:
    """Counts per split and class without decoding, plus the track check.

    Returns:
        ``{"counts": {split: [per-class counts]}, "tracks": {"train": n, "val": n, "shared": n}}``
        (splits that are not installed are left out).
    """
    summary = {"counts": {}, "tracks": {}}
    manifest = base.read_manifest(NAME) or {}
    parts = manifest.get("parts", {})
    if "train" in parts:
        records = training_records()
        train, val = track_split(records, valid_fraction, split_seed)
        for split, indices in (("train", train), ("val", val)):
            summary["counts"][split] = np.bincount(
                [records[index].class_id for index in indices], minlength=signs.NUM_CLASSES
            ).astype(int).tolist()
        train_tracks = {records[index].track for index in train}
        val_tracks = {records[index].track for index in val}
        summary["tracks"] = {"train": len(train_tracks), "val": len(val_tracks),
                             "shared": len(train_tracks & val_tracks)}
    if "test" in parts:
        summary["counts"]["test"] = np.bincount(
            [record.class_id for record in test_records()], minlength=signs.NUM_CLASSES
        ).astype(int).tolist()
    return summary
