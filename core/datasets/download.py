"""Downloading the official files: HTTP with progress, checksum verification, atomic install.

Steps for each dataset: check free space; download every file to a temporary file under
``<root>/.staging`` while hashing it (MD5 and SHA-256); verify size and checksum; then hand the
verified files to the dataset's importer, which extracts into a temporary folder and renames it
into place. Any failure (no network, a dropped connection, a checksum mismatch, a full disk)
deletes the temporary files and leaves the installed data as it was.

Checksums: GTSRB's official MD5s and the Microsoft zip's SHA-256 are built in. Google's
``cats_and_dogs_filtered.zip`` publishes none, so its SHA-256 is recorded on the first
successful download in ``<root>/checksums.json`` and later downloads must match it.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core import paths
from core.datasets import base, dogs_vs_cats, gtsrb, sources

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 30
USER_AGENT = "TransferLearningLab/1.0 (+python urllib)"
PINS_FILE = "checksums.json"
SPACE_FACTOR = 2.5  # archive + extracted files + decoded cache, roughly
DOGS_VARIANTS = ("filtered", "microsoft")
# What a failed connection's message advises (other callers, e.g. weights, pass their own).
OFFLINE_IMPORT_HINT = ("without internet, download the file elsewhere and import it with --from "
                       "(or the Datasets page's import box)")


@dataclass(frozen=True)
class RemoteFile:
    """One file to download.

    Attributes:
        url: where it is.
        file_name: the name it is saved under (the importer recognises official names/layouts).
        md5: expected MD5 (hex), or ``None``.
        sha256: expected SHA-256 (hex), or ``None``.
        size: expected size in bytes, or ``None``.
        pin_sha256: record the SHA-256 on first success and require it afterwards.
    """

    url: str
    file_name: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    pin_sha256: bool = False


def official_files(name: str, variant: str | None = None) -> list[RemoteFile]:
    """The official files of a dataset (``variant`` picks the Dogs vs Cats source).

    Args:
        name: ``"gtsrb"`` or ``"dogs-vs-cats"``.
        variant: dogs-vs-cats only: ``"filtered"`` (default: Google's 3,000-image zip, 68 MB)
            or ``"microsoft"`` (the full 25,000 images, 825 MB).
    """
    base.check_name(name)
    if name == "gtsrb":
        return [RemoteFile(gtsrb.BASE_URL + file_name, file_name, md5=facts["md5"], size=facts["size"])
                for file_name, facts in gtsrb.OFFICIAL_FILES.items()]
    if name == "dogs-vs-cats":
        variant = variant or "filtered"
        if variant not in DOGS_VARIANTS:
            raise base.DatasetError(f"dogs-vs-cats variant must be one of {DOGS_VARIANTS}, received {variant!r}")
        url = dogs_vs_cats.URLS[variant]
        file_name = url.rsplit("/", 1)[-1]
        facts = dogs_vs_cats.OFFICIAL_FILES[file_name]
        return [RemoteFile(url, file_name, sha256=facts["sha256"], size=facts["size"], pin_sha256=facts["pin"])]
    raise base.DatasetError(f"{name} is generated on this machine; there is nothing to download")


def pins_path() -> Path:
    return paths.data_dir() / PINS_FILE


def pinned_sha256(url: str) -> str | None:
    """The SHA-256 recorded for ``url`` on its first successful download, if any."""
    entry = (base.read_json(pins_path()) or {}).get(url)
    return entry.get("sha256") if isinstance(entry, dict) else None


def pin_sha256(url: str, sha256: str, size: int) -> None:
    pins = base.read_json(pins_path()) or {}
    pins[url] = {"sha256": sha256, "size": size, "pinned_at": sources.now_iso()}
    base.write_json_atomic(pins_path(), pins)


def human_bytes(size: float) -> str:
    """A byte count for people: ``512 B``, ``1.5 MB``, ``2.0 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def check_free_space(folder: Path, needed: int) -> None:
    """Raises a ``DatasetError`` when ``folder``'s file system has less than ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise base.DatasetError(
            f"not enough free disk space under {folder}: about {human_bytes(needed)} needed, "
            f"{human_bytes(free)} free; free some space or set TLLAB_DATA_DIR to a larger disk"
        )


def download_file(remote: RemoteFile, destination: Path, progress=None, timeout: float = TIMEOUT_SECONDS,
                  expected_sha256: str | None = None, offline_hint: str = OFFLINE_IMPORT_HINT) -> dict:
    """Downloads one file while hashing it, then verifies size and checksums.

    Longer than 80 lines on purpose: each way a download can fail (HTTP error, unreachable host,
    stall, dropped connection, full disk, checksum) has its own message, side by side.

    Args:
        remote: what to fetch and what to expect.
        destination: the file to write (deleted again on any failure).
        progress: optional ``callback(phase, bytes_done, bytes_total_or_None)``.
        timeout: seconds without data before giving up.
        expected_sha256: a SHA-256 to require besides ``remote.sha256`` (a pinned one).
        offline_hint: what the message advises when the server cannot be reached.

    Returns:
        ``{"size", "md5", "sha256"}`` of the verified file.

    Raises:
        DatasetError: unreachable server, HTTP error, dropped connection, size or checksum
            mismatch, or a write failure (full disk).
    """
    phase = f"download {remote.file_name}"
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    done = 0
    try:
        request = urllib.request.Request(remote.url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            header = response.headers.get("Content-Length")
            total = int(header) if header and header.isdigit() else remote.size
            if progress is not None:
                progress(phase, 0, total)
            with open(destination, "wb") as stream:
                while True:
                    chunk = response.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    try:
                        sources.write_chunk(stream, chunk)
                    except OSError as error:
                        raise base.DatasetError(
                            sources.describe_os_error(error, destination.parent)
                            + "; nothing was installed") from None
                    md5.update(chunk)
                    sha256.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(phase, done, total)
        if header and header.isdigit() and done != int(header):
            raise base.DatasetError(
                f"the connection dropped while downloading {remote.url}: received {human_bytes(done)} of "
                f"{human_bytes(int(header))}; nothing was installed, try again"
            )
    except base.DatasetError:
        destination.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as error:
        destination.unlink(missing_ok=True)
        raise base.DatasetError(f"download of {remote.url} failed: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        destination.unlink(missing_ok=True)
        raise base.DatasetError(
            f"cannot reach {remote.url} ({error.reason}); {offline_hint}"
        ) from None
    except (socket.timeout, TimeoutError):
        destination.unlink(missing_ok=True)
        raise base.DatasetError(
            f"the download of {remote.url} stalled for {timeout:.0f} s after {human_bytes(done)}; "
            "nothing was installed, try again"
        ) from None
    except (OSError, http.client.HTTPException) as error:
        destination.unlink(missing_ok=True)
        raise base.DatasetError(
            f"the connection dropped while downloading {remote.url} after {human_bytes(done)} "
            f"({type(error).__name__}: {error}); nothing was installed, try again"
        ) from None
    result = {"size": done, "md5": md5.hexdigest(), "sha256": sha256.hexdigest()}
    problems = []
    if remote.size is not None and done != remote.size:
        problems.append(f"size {done:,} bytes, expected {remote.size:,}")
    if remote.md5 and result["md5"] != remote.md5.lower():
        problems.append(f"MD5 {result['md5']}, expected {remote.md5}")
    for expected in (remote.sha256, expected_sha256):
        if expected and result["sha256"] != expected.lower():
            problems.append(f"SHA-256 {result['sha256']}, expected {expected}")
    if problems:
        destination.unlink(missing_ok=True)
        raise base.DatasetError(
            f"checksum mismatch for {remote.file_name} from {remote.url}: {'; '.join(problems)}. "
            "The download is corrupt or the file changed; nothing was installed"
        )
    return result


def download_and_install(name: str, progress=None, variant: str | None = None,
                         files: list[RemoteFile] | None = None, timeout: float = TIMEOUT_SECONDS) -> dict:
    """Downloads a dataset's files, verifies them, and installs them atomically.

    Args:
        name: ``"gtsrb"`` or ``"dogs-vs-cats"``.
        progress: optional ``callback(phase, done, total)`` (bytes while downloading).
        variant: dogs-vs-cats source, see :func:`official_files`.
        files: what to download instead of the official files (tests use a local server).
        timeout: seconds without data before a download gives up.

    Returns:
        The installed dataset's manifest, with ``downloads`` (url, size, md5, sha256) added.
    """
    remotes = files if files is not None else official_files(name, variant)
    known = sum(remote.size or 0 for remote in remotes)
    check_free_space(paths.data_dir(), int(known * SPACE_FACTOR))
    folder = base.new_staging_dir(f"{name}-download")
    try:
        downloaded, records = [], []
        for remote in remotes:
            pinned = pinned_sha256(remote.url) if remote.pin_sha256 else None
            target = folder / remote.file_name
            record = download_file(remote, target, progress=progress, timeout=timeout,
                                   expected_sha256=pinned)
            downloaded.append(target)
            records.append({"url": remote.url, **record})
        installer = gtsrb.install if name == "gtsrb" else dogs_vs_cats.install
        manifest = installer(downloaded, progress=progress)
        for remote, record in zip(remotes, records):
            if remote.pin_sha256 and pinned_sha256(remote.url) is None:
                pin_sha256(remote.url, record["sha256"], record["size"])
        manifest["downloads"] = records
        manifest_path = base.dataset_dir(name) / base.MANIFEST_NAME
        base.write_json_atomic(manifest_path, manifest)
        return manifest
    finally:
        base.remove_tree(folder)
