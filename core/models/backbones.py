"""The backbones transfer learning can start from, and the ``weights`` setting that picks theirs.

Each backbone is one module with the same small interface (``build_base``,
``preprocessing_layer``, ``block_index`` and constants such as ``FEATURE_LAYER``):

* ``vgg16``: ``core.models.vgg16`` (the study);
* ``mobilenetv2``: ``core.models.mobilenet_v2``;
* ``mobilenet``: ``core.models.mobilenet`` (v1).

The ``weights`` setting (one string, stored in ``config.json``):

* ``"imagenet"``: the backbone's ImageNet weights, installed by ``python -m core.weights get``
  (downloaded from Keras when online, or imported ``--from`` a local file), see ``core.weights``;
* a file path: a ``.h5``/``.weights.h5`` file for the backbone's base;
* ``"run:<run id>"``: the convolutional layers of a finished run;
* ``"none"`` (or None): random initialisation, the scratch baseline.

Importing this module is cheap: backbone modules (and Keras) load only when asked for.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

VGG16 = "vgg16"
MOBILENET_V2 = "mobilenetv2"
MOBILENET = "mobilenet"
BACKBONE_NAMES = (VGG16, MOBILENET_V2, MOBILENET)
BACKBONE_MODULES = {
    VGG16: "core.models.vgg16",
    MOBILENET_V2: "core.models.mobilenet_v2",
    MOBILENET: "core.models.mobilenet",
}
BACKBONE_TITLES = {
    VGG16: "VGG16 (the study)",
    MOBILENET_V2: "MobileNetV2 (light, for CPU labs)",
    MOBILENET: "MobileNet v1 (lightest)",
}

IMAGENET = "imagenet"
NONE = "none"
RUN_PREFIX = "run:"
WEIGHTS_FILE_SUFFIXES = (".h5", ".hdf5", ".keras")


@dataclass(frozen=True)
class WeightsChoice:
    """A parsed ``weights`` setting.

    Attributes:
        kind: ``"imagenet"``, ``"file"``, ``"run"`` or ``"none"``.
        path: the weights file (kind ``"file"``), or None.
        run: the source run id (kind ``"run"``), or None.
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
    """Validates a backbone name and returns it.

    Raises:
        ValueError: naming the backbone received and the known ones.
    """
    if backbone not in BACKBONE_NAMES:
        raise ValueError(f"backbone must be one of {BACKBONE_NAMES}, received {backbone!r}")
    return backbone


def backbone_module(backbone: str):
    """The module that builds ``backbone`` (imports Keras)."""
    return importlib.import_module(BACKBONE_MODULES[check_backbone(backbone)])


def parse_weights(weights: str | os.PathLike | None, backbone: str = VGG16) -> WeightsChoice:
    """Parses a ``weights`` setting (see the module docstring).

    Args:
        weights: ``"imagenet"``, ``"none"``/None, ``"run:<id>"`` or a file path.
        backbone: the backbone the weights are for.

    Returns:
        A ``WeightsChoice``.

    Raises:
        ValueError: for a path that is not a weights file.
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
            raise ValueError(f"weights {text!r} names no run; expected 'run:<run id>'")
        return WeightsChoice("run", run=run)
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(
            f"weights must be 'imagenet', 'none', 'run:<id>' or an existing file; "
            f"received {text!r}, which is not a file"
        )
    if not path.name.endswith(WEIGHTS_FILE_SUFFIXES):
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
