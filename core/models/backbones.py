"""Backbones for transfer learning: where their weights come from and how they preprocess.

Three sources of pretrained weights, chosen by one ``weights`` string:

* ``"imagenet"``: Keras' ImageNet file, downloaded on first use into ``~/.keras/models``
  (``$KERAS_HOME/models``) with progress reported and its MD5 checked. Offline, this raises
  ``WeightsUnavailableError`` pointing at the local-file option.
* a file path (or ``"local"``, which picks the first file found under
  ``<data root>/weights/``, e.g. ``data/weights/vgg16_notop.h5``): for offline lab machines.
  Both Keras' legacy ``.h5`` (the downloaded file itself) and Keras 3 ``.weights.h5`` work.
* ``"run:<run id or folder>"``: the convolutional layers of a finished run.

``"none"`` (or ``None``) means random initialisation (the scratch baseline).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core import paths

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

VGG16 = "vgg16"
MOBILENET_V2 = "mobilenetv2"
BACKBONE_NAMES = (VGG16, MOBILENET_V2)

IMAGENET = "imagenet"
LOCAL = "local"
NONE = "none"
RUN_PREFIX = "run:"

VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + VGG16_NOTOP_FILE
)
VGG16_NOTOP_BYTES = 58_889_256
VGG16_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"

# A lab may mirror Keras' weights: TLLAB_WEIGHTS_MIRROR replaces this URL prefix.
KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
WEIGHTS_MIRROR_ENV = "TLLAB_WEIGHTS_MIRROR"
MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)
MOBILENET_V2_URL_ROOT = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"

LOCAL_WEIGHTS_FOLDER = "weights"
# File names looked for under <data root>/weights/, in order of preference.
LOCAL_WEIGHTS_NAMES = {
    VGG16: ("vgg16_notop.h5", "vgg16_notop.weights.h5", VGG16_NOTOP_FILE),
    MOBILENET_V2: ("mobilenetv2_notop.h5", "mobilenetv2_notop.weights.h5"),
}

# Layers whose weights VGG16 fine-tuning unfreezes (the study: "the last block").
VGG16_BLOCK5_LAYERS = ("block5_conv1", "block5_conv2", "block5_conv3")
VGG16_CONV_LAYERS = tuple(
    f"block{block}_conv{index}"
    for block, count in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
    for index in range(1, count + 1)
)
# The last convolution of each backbone: what Grad-CAM looks at.
LAST_CONV_LAYER = {VGG16: "block5_conv3", MOBILENET_V2: "out_relu"}
FEATURE_LAYER = {VGG16: "block5_pool", MOBILENET_V2: "out_relu"}

DOWNLOAD_CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT_SECONDS = 30

ProgressCallback = Callable[[int, int | None], None]


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (offline download, missing file, bad checksum)."""


@dataclass(frozen=True)
class WeightsChoice:
    """A parsed ``weights`` setting.

    Attributes:
        kind: ``"imagenet"``, ``"file"``, ``"run"`` or ``"none"``.
        path: the weights file (kind ``"file"``), or None.
        run: the source run id or folder (kind ``"run"``), or None.
    """

    kind: str
    path: Path | None = None
    run: str | None = None

    @property
    def pretrained(self) -> bool:
        return self.kind != NONE

    def as_setting(self) -> str:
        """The string form stored in ``config.json``."""
        if self.kind == "file":
            return str(self.path)
        if self.kind == "run":
            return f"{RUN_PREFIX}{self.run}"
        return self.kind


def check_backbone(backbone: str) -> str:
    """Validates a backbone name and returns it."""
    if backbone not in BACKBONE_NAMES:
        raise ValueError(f"backbone must be one of {BACKBONE_NAMES}, received {backbone!r}")
    return backbone


def local_weights_dir() -> Path:
    """The folder under the data root where offline weights files are looked for."""
    return paths.data_dir() / LOCAL_WEIGHTS_FOLDER


def discover_local_weights(backbone: str = VGG16) -> list[Path]:
    """Lists weights files for ``backbone`` placed under ``<data root>/weights/``.

    Args:
        backbone: one of ``BACKBONE_NAMES``.

    Returns:
        Existing files, the conventional names first, then any other ``*.h5`` whose name
        starts with the backbone's name.
    """
    check_backbone(backbone)
    folder = local_weights_dir()
    if not folder.is_dir():
        return []
    found = [folder / name for name in LOCAL_WEIGHTS_NAMES[backbone] if (folder / name).is_file()]
    for candidate in sorted(folder.glob("*.h5")):
        if candidate.name.lower().startswith(backbone) and candidate not in found:
            found.append(candidate)
    return found


def parse_weights(weights: str | os.PathLike | None, backbone: str = VGG16) -> WeightsChoice:
    """Parses a ``weights`` setting (see the module docstring).

    Args:
        weights: ``"imagenet"``, ``"none"``/None, ``"local"``, ``"run:<id>"`` or a file path.
        backbone: the backbone the weights are for.

    Returns:
        A ``WeightsChoice``.

    Raises:
        ValueError: for a path that does not exist or ``"local"`` with no file found.
    """
    check_backbone(backbone)
    if weights is None or str(weights).strip().lower() in ("", NONE, "random", "null"):
        return WeightsChoice(NONE)
    text = str(weights).strip()
    if text.lower() == IMAGENET:
        return WeightsChoice(IMAGENET)
    if text.startswith(RUN_PREFIX):
        run = text[len(RUN_PREFIX):].strip()
        if not run:
            raise ValueError(f"weights {text!r} names no run; expected 'run:<run id or folder>'")
        return WeightsChoice("run", run=run)
    if text.lower() == LOCAL:
        found = discover_local_weights(backbone)
        if not found:
            raise ValueError(
                f"weights='local' but no {backbone} weights file is in {local_weights_dir()}; "
                f"expected one of {LOCAL_WEIGHTS_NAMES[backbone]}"
            )
        return WeightsChoice("file", path=found[0].resolve())
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(
            f"weights must be 'imagenet', 'none', 'local', 'run:<id>' or an existing file; "
            f"received {text!r}, which is not a file"
        )
    if not path.name.endswith((".h5", ".hdf5", ".keras")):
        raise ValueError(f"a weights file must end in .h5, .weights.h5 or .keras, received {path.name!r}")
    check_weights_file(path)
    return WeightsChoice("file", path=path.resolve())


def check_weights_file(path: str | os.PathLike) -> None:
    """Refuses a weights file that cannot be opened, before any model is built.

    ``.keras`` files must be zip archives; ``.h5``/``.hdf5`` files must open as HDF5 (a
    truncated download, random bytes or a renamed file fail here, with a message, instead of
    deep inside Keras).

    Raises:
        ValueError: naming the file and what was expected.
    """
    import zipfile

    path = Path(path)
    if path.name.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path.name} is not a Keras .keras file (not a zip archive: truncated "
                             "or damaged); expected a file saved by model.save()")
        return
    try:
        with open(path, "rb") as stream:
            signature = stream.read(len(HDF5_SIGNATURE))
    except OSError as error:
        raise ValueError(f"cannot read the weights file {path.name}: {error.strerror or error}") from None
    if signature != HDF5_SIGNATURE:
        raise ValueError(f"{path.name} is not an HDF5 weights file (no HDF5 signature); expected a "
                         "Keras .weights.h5 or .h5 file")
    import h5py

    try:
        with h5py.File(path, "r") as weights:
            list(weights.keys())
    except (OSError, ValueError, KeyError, RuntimeError):
        raise ValueError(f"{path.name} is a damaged HDF5 file (truncated or corrupt); download "
                         "the weights again") from None


def keras_cache_dir() -> Path:
    """Where Keras caches downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def imagenet_weights_file(backbone: str = VGG16, image_size: int = 224) -> tuple[str, str, str | None, int | None]:
    """Name, URL, MD5 and size in bytes of a backbone's no-top ImageNet weights file.

    MobileNetV2 has one file per input size (96..224); other sizes use the 224 file. With
    ``$TLLAB_WEIGHTS_MIRROR`` set (e.g. ``http://lab-server/keras-applications``), the URL
    points there instead of Google's storage; the checksum stays the same.
    """
    check_backbone(backbone)
    if backbone == VGG16:
        name, url, md5, size = VGG16_NOTOP_FILE, VGG16_NOTOP_URL, VGG16_NOTOP_MD5, VGG16_NOTOP_BYTES
    else:
        rows = image_size if image_size in MOBILENET_V2_SIZES else 224
        name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
        url, md5, size = MOBILENET_V2_URL_ROOT + name, None, None
    mirror = os.environ.get(WEIGHTS_MIRROR_ENV)
    if mirror:
        url = mirror.rstrip("/") + "/" + url[len(KERAS_APPLICATIONS_URL):]
    return name, url, md5, size


def imagenet_weights_cached(backbone: str = VGG16, image_size: int = 224,
                            cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Returns the cached ImageNet weights file if it is present with the right size, else None."""
    name, _, _, size = imagenet_weights_file(backbone, image_size)
    path = Path(cache_dir or keras_cache_dir()) / name
    if path.is_file() and (size is None or path.stat().st_size == size):
        return path
    return None


def file_md5(path: str | os.PathLike) -> str:
    """MD5 hex digest of a file (what Keras' weight checksums use)."""
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(DOWNLOAD_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, destination: str | os.PathLike, *, expected_md5: str | None = None,
                  expected_bytes: int | None = None, progress: ProgressCallback | None = None,
                  timeout: float = DOWNLOAD_TIMEOUT_SECONDS) -> Path:
    """Downloads ``url`` to ``destination`` through a temp file, checking size and MD5.

    The transfer itself is the datasets' downloader (``core.datasets.download.download_file``),
    so weights get the same handling of stalls, dropped connections, HTTP errors and full disks.

    Args:
        url: where to fetch from (http, https or file URL).
        destination: the final file; written only once the download is complete and verified.
        expected_md5: hex MD5 the file must have, or None.
        expected_bytes: size the file must have, or None.
        progress: called as ``progress(bytes_done, bytes_total_or_None)`` while downloading.
        timeout: socket timeout in seconds.

    Returns:
        ``destination`` as a Path.

    Raises:
        WeightsUnavailableError: on a network error or a size/checksum mismatch.
    """
    from core.datasets import base as dataset_base
    from core.datasets import download as dataset_download

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part",
                                         dir=destination.parent)
    os.close(handle)
    remote = dataset_download.RemoteFile(url=url, file_name=destination.name, md5=expected_md5,
                                         size=expected_bytes)
    report = (lambda phase, done, total: progress(done, total)) if progress else None
    try:
        dataset_download.download_file(remote, Path(temp_name), progress=report, timeout=timeout,
                                       offline_hint="the machine looks offline")
        os.replace(temp_name, destination)
    except dataset_base.DatasetError as error:
        raise WeightsUnavailableError(str(error)) from error
    finally:
        Path(temp_name).unlink(missing_ok=True)
    return destination


def offline_hint(backbone: str = VGG16) -> str:
    """The sentence every 'cannot download' message ends with: how to work offline."""
    names = LOCAL_WEIGHTS_NAMES[check_backbone(backbone)]
    return (
        f"Offline? Copy the weights file to {local_weights_dir() / names[0]} (or anywhere, then "
        f"pass its path: --weights PATH / the 'Local weights file' option), or place "
        f"{imagenet_weights_file(backbone)[0]} in {keras_cache_dir()}."
    )


def ensure_imagenet_weights(backbone: str = VGG16, *, image_size: int = 224,
                            url: str | None = None, cache_dir: str | os.PathLike | None = None,
                            expected_md5: str | None = "default", expected_bytes: int | None = -1,
                            progress: ProgressCallback | None = None) -> Path:
    """Returns the ImageNet weights file, downloading it (with progress) when not cached.

    Args:
        backbone: one of ``BACKBONE_NAMES``.
        image_size: input size (selects MobileNetV2's file).
        url: override the download URL (tests serve a file from 127.0.0.1).
        cache_dir: override ``keras_cache_dir()``.
        expected_md5: override the checksum ("default" = Keras' published one; None = no check).
        expected_bytes: override the size (-1 = the published size; None = no check).
        progress: ``progress(bytes_done, bytes_total)`` during the download.

    Returns:
        The path of the verified file.

    Raises:
        WeightsUnavailableError: offline or corrupt download, with the local-file hint.
    """
    name, default_url, default_md5, default_bytes = imagenet_weights_file(backbone, image_size)
    md5 = default_md5 if expected_md5 == "default" else expected_md5
    size = default_bytes if expected_bytes == -1 else expected_bytes
    folder = Path(cache_dir or keras_cache_dir())
    destination = folder / name
    if destination.is_file() and (size is None or destination.stat().st_size == size):
        return destination
    try:
        return download_file(url or default_url, destination, expected_md5=md5,
                             expected_bytes=size, progress=progress)
    except WeightsUnavailableError as error:
        raise WeightsUnavailableError(
            f"ImageNet weights for {backbone} are not available: {error}. {offline_hint(backbone)}"
        ) from error


def log_progress(print_function: Callable[[str], None] = print, step_percent: int = 10) -> ProgressCallback:
    """Makes a progress callback that prints every ``step_percent`` percent (for logs and CLIs)."""
    state = {"next": 0, "started": time.monotonic()}

    def report(done: int, total: int | None) -> None:
        if not total:
            return
        percent = int(100 * done / total)
        if percent >= state["next"]:
            elapsed = max(time.monotonic() - state["started"], 1e-6)
            print_function(f"downloading weights: {percent:3d}% ({done / 1e6:.1f}/{total / 1e6:.1f} MB, "
                           f"{done / 1e6 / elapsed:.1f} MB/s)")
            state["next"] = percent + step_percent

    return report


def weights_fingerprint(layers) -> str:
    """SHA-256 over the weight arrays of ``layers`` (names and values): a backbone's identity.

    Used as the bottleneck cache key and stored in results so a run proves which weights it used.
    """
    import numpy as np

    digest = hashlib.sha256()
    for layer in layers:
        for variable in layer.weights:
            value = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
            digest.update(f"{layer.name}/{variable.name}:{value.shape}:{value.dtype}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()
