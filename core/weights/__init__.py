"""ImageNet weights as managed assets (``python -m core.weights list | get | info | delete``).

See ``core.weights.store`` for the on-disk layout and ``core.weights.inspection`` for how a file is
recognised. Importing this package does not import Keras.
"""

from core.weights.catalogue import NO_TOP, TOP, VARIANTS, official_file
from core.weights.inspection import WeightsFileError, identify
from core.weights import store
from core.weights.store import (
    WeightsUnavailableError,
    file_sha256,
    delete,
    download,
    import_file,
    import_stream,
    installed,
    installed_file,
    offline_hint,
    resolve_imagenet,
    rows,
    weights_root,
)

__all__ = [
    "NO_TOP", "TOP", "VARIANTS", "WeightsFileError", "WeightsUnavailableError", "delete", "download", "file_sha256",
    "identify", "import_file", "import_stream", "installed", "installed_file", "official_file", "offline_hint",
    "resolve_imagenet", "rows", "weights_root",
]
