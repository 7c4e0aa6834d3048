"""Running ``get`` in a background process, for the Datasets page.

The page must stay responsive during a long download or import, and Streamlit must not be
called from other threads. So the page starts ``python -m core.datasets get NAME ...`` as a
separate process (the very code path of the CLI), which only writes files and its progress
file; the page polls :func:`core.datasets.progress.read`. The process survives page reruns and
browser reloads; its output goes to ``<root>/.progress/<name>.log``.

One get per dataset at a time: starting is decided under a file lock
(``<root>/.progress/<name>.lock``), so of two sessions that press "Import" together exactly one
starts a process; with ``start_or_join`` the other joins it (it shows the same progress, and
its own uploads are removed).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from core import paths
from core.datasets import base, progress
from core.files import file_lock


def log_path(name: str):
    """``<root>/.progress/<name>.log``: the background process's output."""
    return progress.progress_path(name).with_suffix(".log")


UPLOADS_FOLDER = ".uploads"
UPLOAD_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_UPLOAD_NAME_CHARS = 80
# One import takes at most the three official GTSRB zips (276 + 84 MB + labels).
MAX_UPLOAD_FILES = 3
MAX_UPLOAD_TOTAL_BYTES = 512 * 1024 * 1024


def upload_dir(name: str) -> Path:
    """A fresh folder for files uploaded on the page (``<root>/.uploads/<name>-<time>``)."""
    folder = paths.data_dir() / UPLOADS_FOLDER / f"{base.check_name(name)}-{time.time_ns()}"
    folder.mkdir(parents=True)
    return folder


def check_uploads(sizes: list[int]) -> None:
    """Refuses a batch of uploads before anything is written to disk.

    Args:
        sizes: the byte size of each uploaded file.

    Raises:
        DatasetError: more than ``MAX_UPLOAD_FILES`` files, or more than
            ``MAX_UPLOAD_TOTAL_BYTES`` together.
    """
    if len(sizes) > MAX_UPLOAD_FILES:
        raise base.DatasetError(
            f"{len(sizes)} files uploaded at once; expected at most {MAX_UPLOAD_FILES} zips "
            "(the training zip, or the test images zip with its labels zip)"
        )
    total = sum(int(size) for size in sizes)
    if total > MAX_UPLOAD_TOTAL_BYTES:
        raise base.DatasetError(
            f"the uploads hold {total / 2**20:,.0f} MiB together, above the "
            f"{MAX_UPLOAD_TOTAL_BYTES / 2**20:,.0f} MiB limit of one import"
        )


def upload_target(folder: Path, index: int, file_name: str) -> Path:
    """Where one uploaded file is saved: unique within ``folder``, whatever the browser sent.

    The browser's file name is reduced to its last component and safe characters, and prefixed
    with the upload's position, so two uploads called ``train.zip`` never overwrite each other
    and no name can leave ``folder``.

    Args:
        folder: a fresh folder from :func:`upload_dir`.
        index: the upload's position in the batch (0, 1, ...).
        file_name: the name the browser sent.

    Returns:
        ``folder / "NNN-<safe name>"`` (ending in ``.zip`` when the name had no suffix).
    """
    last = str(file_name).replace("\\", "/").rsplit("/", 1)[-1]
    safe = UPLOAD_NAME_UNSAFE.sub("_", last).strip("._")[-MAX_UPLOAD_NAME_CHARS:] or "upload.zip"
    if "." not in safe:
        safe += ".zip"
    return Path(folder) / f"{int(index):03d}-{safe}"


def start_get(name: str, sources: list[str] | None = None, variant: str | None = None,
              cleanup: list[str] | None = None) -> int:
    """Starts ``python -m core.datasets get`` in the background; returns its pid.

    Args:
        name: dataset name.
        sources: local paths to import (``None`` downloads).
        variant: dogs-vs-cats download variant.
        cleanup: temporary upload folders the process deletes when done.

    Raises:
        DatasetError: a get of the same dataset is already running.
    """
    pid, joined = start_or_join(name, sources, variant=variant, cleanup=cleanup, join=False)
    return pid


def start_or_join(name: str, sources: list[str] | None = None, variant: str | None = None,
                  cleanup: list[str] | None = None, *, join: bool = True) -> tuple[int | None, bool]:
    """Starts a background get, or joins the one of the same dataset that is already running.

    Args:
        name: dataset name.
        sources: local paths to import (``None`` downloads).
        variant: dogs-vs-cats download variant.
        cleanup: temporary upload folders the process deletes when done; when joining, they are
            deleted at once (the running get does not use them).
        join: False raises instead of joining.

    Returns:
        ``(pid, joined)``: the pid of the process doing the work (None while the one joined is
        still starting) and whether it was already running.

    Raises:
        DatasetError: the process cannot be started, or a get is running and ``join`` is False.
    """
    base.check_name(name)
    with file_lock(progress.progress_path(name).with_suffix(".lock")):
        if progress.is_running(name):
            if not join:
                raise base.DatasetError(f"a download/import of {name} is already running")
            for path in cleanup or []:
                remove_upload(path)
            return (progress.read(name) or {}).get("pid"), True
        return _spawn_get(name, sources, variant, cleanup), False


def _spawn_get(name: str, sources, variant, cleanup) -> int:
    command = [sys.executable, "-m", "core.datasets", "get", name, "--background"]
    for source in sources or []:
        command += ["--from", str(source)]
    if variant:
        command += ["--variant", variant]
    for path in cleanup or []:
        command += ["--cleanup", str(path)]
    environment = dict(os.environ, **{paths.DATA_DIR_ENV: str(paths.data_dir()), "PYTHONUNBUFFERED": "1"})
    # Mark it running first (no pid yet), so the page shows "downloading" at once; the child
    # overwrites this record with its own pid as soon as it starts.
    now = time.time()
    base.write_json_atomic(progress.progress_path(name), {
        "state": "running", "pid": None, "phase": "starting", "done": 0, "total": None,
        "message": "", "started_at": now, "updated_at": now})
    log = log_path(name)
    try:
        with open(log, "w", encoding="utf-8") as stream:
            process = subprocess.Popen(command, cwd=paths.REPO_ROOT, env=environment, stdout=stream,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
    except OSError as error:
        progress.clear(name)
        raise base.DatasetError(f"cannot start the background process: {error}") from None
    return process.pid


def remove_upload(path: str | os.PathLike) -> None:
    """Deletes a temporary upload folder (only inside the data root's upload folder)."""
    target = Path(path).resolve()
    uploads = (paths.data_dir() / UPLOADS_FOLDER).resolve()
    if uploads in target.parents:
        base.remove_tree(target)
        try:
            uploads.rmdir()  # the last upload gone: leave no empty folder behind
        except OSError:
            pass  # other uploads are still there


def read_log(name: str, max_chars: int = 4000) -> str:
    """The tail of the background process's output ('' when none)."""
    try:
        return log_path(name).read_text(encoding="utf-8", errors="replace")[-max_chars:]
    except OSError:
        return ""
