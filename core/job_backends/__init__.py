"""Where training jobs run: this machine (``local``) or a Ray cluster (``ray``).

``TLLAB_JOB_BACKEND`` picks the backend for new jobs (default ``local``, the FIFO queue with
slots in ``core.jobs``). Every run records its backend in ``status.json["backend"]``, so
``core.jobs.status``/``cancel`` follow the backend that started the run, whatever the setting
is now. The Ray backend lives in ``core.job_backends.ray_backend`` and imports Ray only when used.
"""

from __future__ import annotations

import os

BACKEND_ENV = "TLLAB_JOB_BACKEND"
LOCAL = "local"
RAY = "ray"
BACKENDS = (LOCAL, RAY)
DEFAULT_BACKEND = LOCAL


def backend_name() -> str:
    """The backend for new jobs (``TLLAB_JOB_BACKEND``: ``local``, the default, or ``ray``).

    Returns:
        ``"local"`` or ``"ray"``.

    Raises:
        ValueError: for any other value.
    """
    text = (os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND).strip().lower()
    if text not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV} must be one of {', '.join(BACKENDS)}, received {text!r}")
    return text


def run_backend(status: dict) -> str:
    """The backend that runs a job, from its ``status.json`` (runs from before backends: local)."""
    return str(status.get("backend") or LOCAL)
