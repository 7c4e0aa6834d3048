"""Installed ImageNet weights: import, download, list, delete, and resolve ``weights="imagenet"``.

Layout under the data root (``$TLLAB_DATA_DIR``)::

    weights/<backbone>/no_top.weights.h5     (or no_top.h5 for Keras' legacy format)
    weights/<backbone>/top.weights.h5
    weights/<backbone>/manifest.json         one entry per variant: file, sha256, size, alpha,
                                             format, source, installed_at

Every install goes through a staged copy under ``weights/.staging``: the copy is hashed,
identified layer by layer (``core.weights.inspection``) and loaded into the architecture; only
then is it moved into place and the manifest rewritten, both through ``core.files.write_atomic``.
A refused file leaves nothing behind, and an earlier good install stays as it was. Once
installed, resolving ``imagenet`` reads the local file and never touches the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable

from core import files, paths
from core.weights import catalogue
from core.weights.inspection import KERAS3_FORMAT, WeightsFileError, identify

WEIGHTS_FOLDER = "weights"
MANIFEST_FILE = "manifest.json"
STAGING_FOLDER = ".staging"
LOCK_FILE = ".lock"
COPY_CHUNK_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 1 << 30  # VGG16 with its top is 553 MB
LOCK_TIMEOUT_SECONDS = 120.0

ProgressCallback = Callable[[int, int | None], None]


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights are not installed and could not be obtained (the message says how to)."""


def weights_root() -> Path:
    """``<data root>/weights``."""
    return paths.data_dir() / WEIGHTS_FOLDER


def _backbone_dir(backbone: str) -> Path:
    from core.models import backbones

    return weights_root() / backbones.check_backbone(backbone)


def _manifest_path(backbone: str) -> Path:
    return _backbone_dir(backbone) / MANIFEST_FILE


def read_manifest(backbone: str) -> dict:
    """The backbone's manifest (``{"variants": {...}}``), empty when nothing is installed."""
    path = _manifest_path(backbone)
    if not path.is_file():
        return {"variants": {}}
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"variants": {}}
    return data if isinstance(data.get("variants"), dict) else {"variants": {}}


def installed(backbone: str, variant: str = catalogue.NO_TOP) -> dict | None:
    """The manifest entry of an installed variant whose file is present, else None.

    The entry has ``path`` (absolute) besides what was recorded at install time.
    """
    catalogue.official_file(backbone, variant)  # validates both names
    entry = read_manifest(backbone)["variants"].get(variant)
    if not entry:
        return None
    path = _backbone_dir(backbone) / entry.get("file", "")
    if not path.is_file():
        return None
    return {**entry, "path": str(path)}


def installed_file(backbone: str, variant: str = catalogue.NO_TOP) -> Path | None:
    """The installed file of a variant, or None."""
    entry = installed(backbone, variant)
    return Path(entry["path"]) if entry else None


@contextlib.contextmanager
def _install_lock(timeout: float = LOCK_TIMEOUT_SECONDS):
    """Holds the weights root's install lock (``core.files.file_lock`` on ``weights/.lock``).

    Args:
        timeout: seconds to wait for another install to finish.

    Raises:
        WeightsUnavailableError: when another install keeps the lock for ``timeout`` seconds.
    """
    lock_path = weights_root() / LOCK_FILE

    def busy(error: TimeoutError) -> WeightsUnavailableError:
        return WeightsUnavailableError(
            f"another install holds {lock_path} for over {timeout:.0f} s; try again")

    with files.file_lock(lock_path, timeout=timeout, on_timeout=busy):
        yield


def _new_staged_file(prefix: str) -> Path:
    """An empty file with a unique name in the staging folder (``weights/.staging``)."""
    staging = weights_root() / STAGING_FOLDER
    staging.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=prefix, suffix=".h5", dir=staging)
    os.close(handle)
    return Path(temp_name)


def _refuse_size(display_name: str, size: int, complete: bool = True) -> None:
    """Raises ``WeightsFileError`` when ``size`` bytes is over ``MAX_WEIGHTS_BYTES``.

    Args:
        display_name: how the message names the file.
        size: its size, or with ``complete=False`` the bytes read from it so far.
        complete: False says "over the bound" rather than a size not yet known.
    """
    if size > MAX_WEIGHTS_BYTES:
        said = f"{size:,} bytes" if complete else f"over {MAX_WEIGHTS_BYTES:,} bytes"
        raise WeightsFileError(f"{display_name} is {said}; weights files above "
                               f"{MAX_WEIGHTS_BYTES:,} bytes are refused")


def _staged_copy(stream: BinaryIO, display_name: str, total: int | None,
                 progress: ProgressCallback | None) -> tuple[Path, str, int]:
    """Streams ``stream`` into a new staging file while hashing it, within the size bound.

    Args:
        stream: a binary file object, read from where it stands to its end.
        display_name: how the size refusal names it.
        total: its size in bytes when known (refused before copying when over the bound, and
            passed to ``progress``).
        progress: ``progress(bytes_copied, total)`` after each chunk.

    Returns:
        (staged file, sha256 hex digest, bytes copied).

    Raises:
        WeightsFileError: over ``MAX_WEIGHTS_BYTES`` (nothing is left in staging).
    """
    if total is not None:
        _refuse_size(display_name, total)
    staged = _new_staged_file("import-")
    digest, done = hashlib.sha256(), 0
    try:
        with open(staged, "wb") as target:
            for chunk in iter(lambda: stream.read(COPY_CHUNK_BYTES), b""):
                done += len(chunk)
                _refuse_size(display_name, done, complete=False)  # longer than said, or size unknown
                target.write(chunk)
                digest.update(chunk)
                if progress is not None:
                    progress(done, total)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged, digest.hexdigest(), done


def _install_staged(staged: Path, backbone: str, sha256: str, size: int, source: str,
                    display_name: str, expected_variant: str | None = None) -> dict:
    """Identifies a staged file and moves it into place; the staged file is gone afterwards."""
    try:
        found = identify(staged, backbone, display_name)
        if expected_variant and found.variant != expected_variant:
            raise WeightsFileError(f"the downloaded file is the {found.variant} variant, "
                                   f"expected {expected_variant}")
        suffix = ".weights.h5" if found.file_format == KERAS3_FORMAT else ".h5"
        entry = {"backbone": backbone, "variant": found.variant, "alpha": found.alpha,
                 "format": found.file_format, "file": f"{found.variant}{suffix}", "sha256": sha256,
                 "size": size, "source": source, "layers": found.num_layers,
                 "values": found.num_values,
                 "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        def move_in(temp: Path) -> None:  # the staged file becomes write_atomic's temp file
            staged.chmod(0o644)
            os.replace(staged, temp)

        with _install_lock():
            folder = _backbone_dir(backbone)
            files.write_atomic(folder / entry["file"], move_in)
            manifest = read_manifest(backbone)
            previous = manifest["variants"].get(found.variant)
            manifest["variants"][found.variant] = entry
            files.write_json_atomic(_manifest_path(backbone), manifest)
            if previous and previous.get("file") != entry["file"]:
                (folder / previous["file"]).unlink(missing_ok=True)
        return {**entry, "path": str(_backbone_dir(backbone) / entry["file"])}
    finally:
        staged.unlink(missing_ok=True)


def import_file(backbone: str, source: str | os.PathLike, *,
                progress: ProgressCallback | None = None, source_label: str | None = None,
                display_name: str | None = None) -> dict:
    """Imports a local ``.h5``/``.weights.h5`` file as ``backbone``'s ImageNet weights.

    Args:
        backbone: ``vgg16``, ``mobilenetv2`` or ``mobilenet``.
        source: the file; its variant (top or no-top) and width are worked out from its layers.
        progress: ``progress(bytes_copied, bytes_total)`` while copying.
        source_label: what to record as the source (default: the file's absolute path).
        display_name: how messages name the file (default its name).

    Returns:
        The installed manifest entry (with ``path``).

    Raises:
        WeightsFileError: a file that is not weights for this backbone (nothing installed).
    """
    source = Path(source).expanduser()
    if not source.is_file():
        raise WeightsFileError(f"{source} is not a file")
    with open(source, "rb") as stream:
        return import_stream(backbone, stream, display_name=display_name or source.name,
                             source_label=source_label or f"file {source.resolve()}",
                             size=source.stat().st_size, progress=progress)


def import_stream(backbone: str, stream: BinaryIO, *, display_name: str, source_label: str,
                  size: int | None = None, progress: ProgressCallback | None = None) -> dict:
    """Imports weights read from a binary file object (an upload) as ``backbone``'s ImageNet weights.

    The stream is copied straight into the staging folder (no other temporary copy), refused
    beyond ``MAX_WEIGHTS_BYTES`` whether or not ``size`` says so, then installed like
    ``import_file``.

    Args:
        backbone: ``vgg16``, ``mobilenetv2`` or ``mobilenet``.
        stream: read from where it stands to its end (e.g. a Streamlit ``UploadedFile``).
        display_name: how messages name the file (an upload's own name).
        source_label: what to record as the source, e.g. ``"upload NAME"``.
        size: the stream's size in bytes when known (an oversized one is refused before copying).
        progress: ``progress(bytes_copied, size)`` while copying.

    Returns:
        The installed manifest entry (with ``path``).

    Raises:
        WeightsFileError: a stream that is too large or not weights for this backbone
            (nothing installed, nothing left in staging).
    """
    staged, sha256, copied = _staged_copy(stream, display_name, size, progress)
    return _install_staged(staged, backbone, sha256, copied, source_label, display_name)


def download(backbone: str, variant: str = catalogue.NO_TOP, *,
             progress: ProgressCallback | None = None, url: str | None = None,
             timeout: float | None = None) -> dict:
    """Downloads Keras' official file for a variant, verifies it and installs it.

    Args:
        backbone: the backbone.
        variant: ``no_top`` or ``top``.
        progress: ``progress(bytes_done, bytes_total_or_None)``.
        url: override the URL (tests serve files from 127.0.0.1).
        timeout: socket timeout in seconds (default the datasets' downloader's).

    Returns:
        The installed manifest entry.

    Raises:
        WeightsUnavailableError: offline, HTTP error, checksum mismatch or a wrong file.
    """
    from core.datasets import base as dataset_base
    from core.datasets import download as dataset_download

    official = catalogue.official_file(backbone, variant)
    location = url or official.url
    remote = dataset_download.RemoteFile(url=location, file_name=official.file_name, md5=official.md5,
                                         size=official.size)
    staged = _new_staged_file("download-")
    report = (lambda phase, done, total: progress(done, total)) if progress else None
    pinned = None if official.md5 else dataset_download.pinned_sha256(location)
    try:
        result = dataset_download.download_file(
            remote, staged, progress=report, expected_sha256=pinned,
            offline_hint=f"the machine looks offline. {offline_hint(backbone)}",
            **({} if timeout is None else {"timeout": timeout}))
        entry = _install_staged(staged, backbone, result["sha256"], result["size"],
                                f"download {location}", official.file_name, expected_variant=variant)
    except (dataset_base.DatasetError, WeightsFileError) as error:
        raise WeightsUnavailableError(f"ImageNet weights for {backbone} ({variant}) are not "
                                      f"available: {error}") from None
    finally:
        staged.unlink(missing_ok=True)
    if not official.md5 and not pinned:
        dataset_download.pin_sha256(location, result["sha256"], result["size"])
    return entry


def offline_hint(backbone: str) -> str:
    """How to install the weights without internet (ends every 'not available' message)."""
    official = catalogue.official_file(backbone)
    return (f"Offline? Download {official.file_name} (and the with-top file) elsewhere, then "
            f"`python -m core.weights get {backbone} --from FILE`, or upload it on the "
            f"'Data & weights' page")


def resolve_imagenet(backbone: str, variant: str = catalogue.NO_TOP, *,
                     progress: ProgressCallback | None = None, allow_download: bool = True) -> dict:
    """The installed entry for ``weights="imagenet"``, downloading it first when allowed.

    Raises:
        WeightsUnavailableError: not installed and not downloadable, with how to import it.
    """
    entry = installed(backbone, variant)
    if entry:
        return entry
    if not allow_download:
        raise WeightsUnavailableError(
            f"ImageNet weights for {backbone} ({variant}) are not installed. {offline_hint(backbone)}")
    return download(backbone, variant, progress=progress)


def delete(backbone: str) -> int:
    """Deletes every installed variant of ``backbone``; returns the bytes freed."""
    folder = _backbone_dir(backbone)
    if not folder.is_dir():
        return 0
    with _install_lock():
        freed = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder)
    return freed


def rows() -> list[dict]:
    """One row per backbone and variant: status, alpha, size, source, date, sha256 prefix."""
    from core.models import backbones

    table = []
    for backbone in backbones.BACKBONE_NAMES:
        for variant in catalogue.VARIANTS:
            entry = installed(backbone, variant)
            table.append({
                "backbone": backbone, "variant": variant,
                "status": "installed" if entry else "absent",
                "alpha": entry.get("alpha") if entry else None,
                "size": entry.get("size") if entry else None,
                "source": entry.get("source") if entry else "",
                "installed_at": entry.get("installed_at") if entry else "",
                "sha256": (entry.get("sha256") or "")[:16] if entry else "",
                "path": entry.get("path") if entry else "",
            })
    return table


def log_progress(print_function: Callable[[str], None] = print, step_percent: int = 10) -> ProgressCallback:
    """A progress callback that prints every ``step_percent`` percent (for logs and CLIs)."""
    state = {"next": 0, "started": time.monotonic()}

    def report(done: int, total: int | None) -> None:
        if not total:
            return
        percent = int(100 * done / total)
        if percent >= state["next"]:
            elapsed = max(time.monotonic() - state["started"], 1e-6)
            print_function(f"weights: {percent:3d}% ({done / 1e6:.1f}/{total / 1e6:.1f} MB, "
                           f"{done / 1e6 / elapsed:.1f} MB/s)")
            state["next"] = percent + step_percent

    return report


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file (what the manifest records)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(COPY_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
