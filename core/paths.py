"""Where the app keeps its data and runs.

Both roots are read from the environment at call time (never cached at import), so tests and
lab machines can point them elsewhere:

* ``TLLAB_DATA_DIR``: datasets and decoded caches; default ``data/`` in the repository.
* ``TLLAB_RUNS_DIR``: one folder per training run; default ``runs/`` in the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "TLLAB_DATA_DIR"
RUNS_DIR_ENV = "TLLAB_RUNS_DIR"
DEFAULT_DATA_DIR = REPO_ROOT / "data"
DEFAULT_RUNS_DIR = REPO_ROOT / "runs"


def data_dir() -> Path:
    """Returns the data root (``$TLLAB_DATA_DIR`` or ``data/``), creating it if needed."""
    path = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir(override: str | os.PathLike | None = None) -> Path:
    """Returns the runs root, creating it if needed.

    Args:
        override: an explicit folder (e.g. the CLI's ``--runs-dir``); wins over the environment.

    Returns:
        The runs root as an absolute ``Path``.
    """
    chosen = override or os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
