"""Disk cache of decoded splits: per (dataset, split, parameters) one ``.npy`` with the images
and one small ``.npz`` with labels, file names and extras.

The key hashes the installed source's fingerprint (recorded at import: a SHA-256 over the
installed files) with every parameter that changes the arrays (split, image size, ROI crop,
validation fraction, seeds, generator version...). Re-importing a dataset changes the
fingerprint, so old entries are never read again (and ``clear`` removes them). Files are written
to a temporary name and renamed, so a crash never leaves a half cache entry that loads.

Uncompressed and outside the zip container on purpose: GTSRB's 35k training images at 32 px
are 108 MB and a plain ``.npy`` reads at disk/page-cache speed, while ``.npz`` members are
CRC-checked (and zlib would cut the size by half but make every load several times slower).
The ``.npz`` is written last, so its presence marks a complete entry.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from core.datasets import base
from core.files import write_atomic

CACHE_FORMAT_VERSION = 2
CACHE_SUFFIX = ".npz"
IMAGES_SUFFIX = ".images.npy"


def cache_key(**parameters) -> str:
    """A short stable hash of the parameters (JSON-serialisable values)."""
    payload = json.dumps({"format": CACHE_FORMAT_VERSION, **parameters}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


def cache_path(name: str, split: str, image_size: int, key: str) -> Path:
    """Where one cache entry lives: ``<root>/<name>/cache/<split>-<size>px-<key>.npz`` (plus
    ``.images.npy`` beside it)."""
    return base.cache_dir(name) / f"{split}-{image_size}px-{key}{CACHE_SUFFIX}"


def _images_path(path: Path) -> Path:
    return path.with_suffix(IMAGES_SUFFIX)


def load(path: Path) -> dict[str, np.ndarray] | None:
    """Reads a cache entry; ``None`` when it is absent or unreadable (it is then rebuilt).

    Returns:
        ``{"images", "labels", "file_names", ...}`` as arrays (file names as a str array).
    """
    images_path = _images_path(path)
    if not path.is_file() or not images_path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            entry = {key: archive[key] for key in archive.files}
        entry["images"] = np.load(images_path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        path.unlink(missing_ok=True)
        images_path.unlink(missing_ok=True)
        return None
    return entry


def save(path: Path, images: np.ndarray, **arrays: np.ndarray) -> None:
    """Writes a cache entry atomically (temporary files, then renames; the ``.npz`` last).

    Failures (e.g. a full disk) are not fatal: the data was decoded already, the next load
    just decodes again.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(_images_path(path), lambda temp: np.save(temp, images, allow_pickle=False))
        write_atomic(path, lambda temp: np.savez(temp, **arrays))
    except OSError:
        path.unlink(missing_ok=True)
        _images_path(path).unlink(missing_ok=True)


def clear(name: str) -> int:
    """Deletes every cache entry of one dataset; returns how many bytes were freed."""
    folder = base.cache_dir(name)
    freed = base.folder_size(folder)
    base.remove_tree(folder)
    return freed


def entries(name: str) -> list[Path]:
    """The cache files of one dataset, newest first."""
    folder = base.cache_dir(name)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"*{CACHE_SUFFIX}"), key=lambda path: path.stat().st_mtime, reverse=True)
