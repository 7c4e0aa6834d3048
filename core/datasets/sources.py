"""Reading dataset sources (zips or folders) and installing them atomically.

A *source* is what the user points at: an official zip, its extracted folder, or a folder that
holds the official zips. :func:`open_sources` turns paths into :class:`SourceFiles` (one per zip
or folder tree) that list relative POSIX names and read bytes, so each dataset's importer has one
code path for zips and folders.

:class:`StagedInstall` writes the new files into a temporary folder under the data root's
``.staging`` (same file system), and only when everything was read, checked and written does it
rename the new parts into place and replace the manifest. Any error before that removes the
temporary folder: nothing half-installed, the existing data untouched.

Archives come from untrusted users (the Datasets page accepts uploads), so a zip is checked
from its central directory before any member is decompressed: a member larger than
``MAX_MEMBER_BYTES``, a total above ``MAX_TOTAL_BYTES``, a member that inflates more than
``MAX_COMPRESSION_RATIO`` times (zip bombs), a symbolic link, or a name that would leave the
dataset folder (``../x``, ``/etc/x``) refuses the whole archive with one ``DatasetError``.
Members are then read in ``READ_CHUNK_BYTES`` chunks that never exceed those caps, whatever
the headers claim.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterable

from core.datasets import base, cache

ProgressCallback = Callable[[str, int, "int | None"], None]
ZIP_SUFFIXES = (".zip",)
IGNORED_NAMES = ("thumbs.db", ".ds_store", "desktop.ini")
PROGRESS_EVERY_FILES = 500
# Caps for archives and folders. The real GTSRB training zip holds 39,252 members, 123 MB in all
# (the official unresized one about 1.5 GB), its largest member is a 79 KB CSV and its highest
# ratio 5.4; Microsoft's Dogs vs Cats zip is 825 MB of JPEGs (ratio about 1).
MAX_MEMBER_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024 * 1024
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_MIN_BYTES = 1024 * 1024  # tiny members may compress well (a blank CSV): not a bomb
READ_CHUNK_BYTES = 1024 * 1024


def _mebibytes(num_bytes: int) -> str:
    return f"{num_bytes / (1024 * 1024):,.1f} MiB"


def check_zip_members(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuses an archive whose listing is unsafe, before anything is decompressed.

    Args:
        path: the zip (for messages).
        infos: its central directory (``ZipFile.infolist()``).

    Raises:
        DatasetError: a member name that leaves the dataset folder, a symbolic link, a member
            above ``MAX_MEMBER_BYTES`` or ``MAX_COMPRESSION_RATIO``, or a total above
            ``MAX_TOTAL_BYTES``.
    """
    total = 0
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise base.DatasetError(
                f"{path} is refused: member {name!r} would land outside the dataset folder "
                "(an absolute name or one with '..'); expected relative names inside the archive"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise base.DatasetError(
                f"{path} is refused: member {name!r} is a symbolic link; expected plain files"
            )
        if info.is_dir():
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            raise base.DatasetError(
                f"{path} is refused: member {name!r} unpacks to {_mebibytes(info.file_size)}, above "
                f"the {_mebibytes(MAX_MEMBER_BYTES)} limit per file (a possible zip bomb)"
            )
        if info.file_size > RATIO_CHECK_MIN_BYTES and \
                info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise base.DatasetError(
                f"{path} is refused: member {name!r} inflates {ratio:,.0f} times, above the "
                f"{MAX_COMPRESSION_RATIO}x limit (a possible zip bomb)"
            )
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise base.DatasetError(
                f"{path} is refused: its files unpack to more than {_mebibytes(MAX_TOTAL_BYTES)} "
                "(a possible zip bomb)"
            )


class SourceFiles:
    """The files of one zip or one folder tree, by relative POSIX path."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.is_zip = self.path.is_file()
        self._zip: zipfile.ZipFile | None = None
        if self.is_zip:
            try:
                self._zip = zipfile.ZipFile(self.path)
                infos = self._zip.infolist()
            except zipfile.BadZipFile as error:
                raise base.DatasetError(
                    f"{self.path} is not a readable zip file (truncated, damaged, or not a zip at "
                    f"all): {error}"
                ) from None
            except OSError as error:
                raise base.DatasetError(f"cannot read {self.path}: {error.strerror or error}") from None
            try:
                check_zip_members(self.path, infos)
            except base.DatasetError:
                self.close()
                raise
            self._sizes = {info.filename: info.file_size for info in infos if not info.is_dir()}
        else:
            self._sizes = {}
            for root, folders, files in os.walk(self.path):
                folders.sort()
                for file_name in sorted(files):
                    full = Path(root) / file_name
                    relative = full.relative_to(self.path).as_posix()
                    try:
                        self._sizes[relative] = full.stat().st_size
                    except OSError:
                        self._sizes[relative] = -1  # unreadable; reported when read
        self.names = sorted(self._sizes)

    def __repr__(self) -> str:
        return f"SourceFiles({str(self.path)!r})"

    def size(self, name: str) -> int:
        return self._sizes[name]

    def read(self, name: str) -> bytes:
        """Reads one member in chunks, never more than ``MAX_MEMBER_BYTES``.

        Damaged zip members, unreadable files and oversized members become ``DatasetError``.
        """
        try:
            if self._zip is not None:
                with self._zip.open(name) as stream:
                    return self._read_bounded(stream, name)
            path = self.path / name
            if path.is_symlink() and self.path.resolve() not in path.resolve().parents:
                raise base.DatasetError(
                    f"{name} in {self.path} is a symbolic link to a file outside that folder; "
                    "expected plain files"
                )
            with open(path, "rb") as stream:
                return self._read_bounded(stream, name)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise base.DatasetError(
                f"{self.path} is damaged: cannot extract {name} ({error}); the zip may be truncated"
            ) from None
        except OSError as error:
            raise base.DatasetError(
                f"cannot read {name} in {self.path}: {error.strerror or error}"
            ) from None

    def _read_bounded(self, stream, name: str) -> bytes:
        chunks = []
        size = 0
        while True:
            chunk = stream.read(READ_CHUNK_BYTES)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_MEMBER_BYTES:
                raise base.DatasetError(
                    f"{self.path} is refused: {name} is larger than the "
                    f"{_mebibytes(MAX_MEMBER_BYTES)} limit per file"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def fingerprint(self) -> str:
        """SHA-256 of a zip file, or of the listing (names + sizes) of a folder."""
        digest = hashlib.sha256()
        if self.is_zip:
            with open(self.path, "rb") as stream:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(chunk)
        else:
            for name in self.names:
                digest.update(f"{name}\0{self._sizes[name]}\n".encode("utf-8"))
        return digest.hexdigest()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


def is_ignored(name: str) -> bool:
    """True for OS litter (Thumbs.db, .DS_Store, __MACOSX/...) that is skipped silently."""
    parts = name.split("/")
    return parts[-1].lower() in IGNORED_NAMES or "__MACOSX" in parts or parts[-1].startswith("._")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(base.IMAGE_EXTENSIONS)


def open_sources(paths: Iterable[str | os.PathLike]) -> list[SourceFiles]:
    """Opens each path: a zip file, a folder holding zips (each opened), or a plain folder tree.

    Raises:
        DatasetError: a path that does not exist, is not a zip, or is an empty folder.
    """
    sources = []
    paths = list(paths)
    if not paths:
        raise base.DatasetError("no source given; pass the official zip(s) or their folder")
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise base.DatasetError(f"{path} does not exist; expected a zip file or a folder")
        if path.is_file():
            if not path.name.lower().endswith(ZIP_SUFFIXES):
                try:
                    is_zip = zipfile.is_zipfile(path)
                except OSError:
                    is_zip = False
                if not is_zip:
                    raise base.DatasetError(
                        f"{path} is not a zip file; expected an official zip or a folder"
                    )
            sources.append(SourceFiles(path))
            continue
        zips = sorted(child for child in path.iterdir()
                      if child.is_file() and child.name.lower().endswith(ZIP_SUFFIXES))
        if zips:
            sources.extend(SourceFiles(child) for child in zips)
        else:
            folder = SourceFiles(path)
            if not folder.names:
                raise base.DatasetError(f"{path} is an empty folder; expected images or the official zips")
            sources.append(folder)
    return sources


def write_chunk(stream, data: bytes) -> None:
    """The one place dataset files are written (downloads and extraction). Tests simulate a
    full disk by making this raise ``OSError(ENOSPC)``."""
    stream.write(data)


def write_file(path: Path, data: bytes) -> None:
    """Writes one extracted file through :func:`write_chunk`."""
    with open(path, "wb") as stream:
        write_chunk(stream, data)


def describe_os_error(error: OSError, where: Path) -> str:
    """A human message for a write failure (disk full, permissions...)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full while writing under {where}; free some space and try again"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write under {where} ({error.strerror}); set TLLAB_DATA_DIR elsewhere"
    return f"cannot write under {where}: {error.strerror or error}"


class StagedInstall:
    """Writes a dataset's new parts to a staging folder, then swaps them in on ``commit``.

    Use as a context manager: leaving the block with an exception (or without ``commit``)
    deletes the staging folder and leaves the installed dataset as it was.
    """

    def __init__(self, name: str):
        self.name = name
        self.root = base.new_staging_dir(name)
        self.parts: dict[str, Path] = {}
        self.written_bytes = 0

    def __enter__(self) -> "StagedInstall":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        base.remove_staging_dir(self.root)

    def part(self, part: str) -> Path:
        """The staging folder of one part (e.g. ``train``), created."""
        folder = self.root / part
        folder.mkdir(parents=True, exist_ok=True)
        self.parts[part] = folder
        return folder

    def write(self, part: str, relative: str, data: bytes) -> Path:
        """Writes one file of a part; an ``OSError`` becomes a ``DatasetError`` naming it."""
        folder = self.part(part)
        components = relative.replace("\\", "/").split("/")
        if any(component in ("", ".", "..") for component in components):
            raise base.DatasetError(
                f"refusing the file name {relative!r}: it would land outside the dataset folder"
            )
        target = folder.joinpath(*components)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_file(target, data)
        except OSError as error:
            raise base.DatasetError(describe_os_error(error, base.dataset_dir(self.name).parent)) from None
        self.written_bytes += len(data)
        return target

    def commit(self, manifest: dict) -> None:
        """Moves each staged part into ``<root>/<name>/`` and writes ``manifest``.

        Parts not staged this time are kept (e.g. importing the test set keeps ``train``).
        The decoded cache of the dataset is cleared.
        """
        destination = base.dataset_dir(self.name)
        destination.mkdir(parents=True, exist_ok=True)
        trash = self.root / ".replaced"
        trash.mkdir(exist_ok=True)
        try:
            for part, folder in self.parts.items():
                target = destination / part
                if target.exists():
                    os.replace(target, trash / part)
                os.replace(folder, target)
            base.write_json_atomic(destination / base.MANIFEST_NAME, manifest)
        except OSError as error:
            raise base.DatasetError(describe_os_error(error, destination)) from None
        cache.clear(self.name)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
