"""Who may name files on the server: local mode (loopback) against LAN mode.

Bound to a loopback address (``make run``, the default ``127.0.0.1``), the app serves one user
on their own machine, and path inputs (import a dataset from a folder, load a weights file) may
name any path, as a command line could. Bound to anything else (``make run HOST=0.0.0.0``),
every browser of the room can reach the server, so the pages offer uploads only: no input
names a path on the server. ``TLLAB_ALLOW_SERVER_PATHS=1`` brings the path inputs back on a
LAN, and even then a path must lie under the data root or one of the roots listed in
``TLLAB_SERVER_PATH_ROOTS`` (``os.pathsep``-separated).

This module never imports Streamlit: pages pass the address they are served on
(``ui.common.server_address()``).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from core import paths

ALLOW_SERVER_PATHS_ENV = "TLLAB_ALLOW_SERVER_PATHS"
SERVER_PATH_ROOTS_ENV = "TLLAB_SERVER_PATH_ROOTS"
LOOPBACK_NAMES = ("", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
TRUE_VALUES = ("1", "true", "yes", "on")


def is_loopback(address: str | None) -> bool:
    """Tells whether a bind address only accepts connections from this machine.

    Args:
        address: Streamlit's ``server.address`` (``None`` or ``""`` when unset).

    Returns:
        True for ``None``, ``""``, ``localhost``, ``127.x.x.x`` and ``::1``; False for
        ``0.0.0.0``, ``::``, a LAN address or a host name other than localhost.
    """
    if address is None:
        return True
    text = str(address).strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def _allowed_by_environment() -> bool:
    return os.environ.get(ALLOW_SERVER_PATHS_ENV, "").strip().lower() in TRUE_VALUES


def server_paths_allowed(address: str | None) -> bool:
    """Tells whether pages may offer inputs that name paths on the server.

    Args:
        address: the address Streamlit is bound to.

    Returns:
        True on a loopback address; elsewhere only when ``TLLAB_ALLOW_SERVER_PATHS=1``.
    """
    return is_loopback(address) or _allowed_by_environment()


def allowed_roots() -> list[Path]:
    """The folders a LAN user may name: the data root, then ``TLLAB_SERVER_PATH_ROOTS``.

    Returns:
        Resolved folders (symbolic links followed), without duplicates, in that order.
    """
    roots = [paths.data_dir()]
    for entry in os.environ.get(SERVER_PATH_ROOTS_ENV, "").split(os.pathsep):
        if entry.strip():
            roots.append(Path(entry.strip()).expanduser())
    resolved = []
    for root in roots:
        folder = root.resolve()
        if folder not in resolved:
            resolved.append(folder)
    return resolved


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_server_path(path: str | os.PathLike, address: str | None) -> Path:
    """Checks a path typed on a page before the app reads it.

    Args:
        path: what the user typed (``~`` is expanded, symbolic links are followed).
        address: the address Streamlit is bound to.

    Returns:
        The resolved path. On a loopback address any path is returned (it may not exist; the
        caller reports that).

    Raises:
        ValueError: on a LAN address when path inputs are disabled, or when the resolved path
            lies outside ``allowed_roots()``; the message names the path and the allowed roots.
    """
    text = str(path).strip()
    if not text or "\0" in text:
        raise ValueError(f"expected a path on this machine, received {str(path)!r}")
    resolved = Path(text).expanduser().resolve()
    if is_loopback(address):
        return resolved
    roots = allowed_roots()
    names = ", ".join(str(root) for root in roots)
    if not _allowed_by_environment():
        raise ValueError(
            f"paths on the server are disabled on a shared network (the app listens on "
            f"{address}); received {text!r}. Upload the file instead, or set "
            f"{ALLOW_SERVER_PATHS_ENV}=1 to allow paths under: {names}"
        )
    if not any(_is_under(resolved, root) for root in roots):
        raise ValueError(
            f"{text!r} (resolved to {resolved}) is outside the allowed roots; expected a path "
            f"under: {names} (add roots with {SERVER_PATH_ROOTS_ENV})"
        )
    return resolved


def mode_description(address: str | None) -> str:
    """One Markdown sentence for the Home page saying which mode is active.

    Args:
        address: the address Streamlit is bound to.

    Returns:
        ``Local mode`` (loopback), ``LAN mode, uploads only`` or ``LAN mode with server paths``
        with what that means for the user.
    """
    shown = address or "localhost"
    if is_loopback(address):
        return (f"**Local mode**: the app listens on `{shown}`, so only this machine can open it; "
                "pages accept paths on this machine as well as uploads.")
    if not _allowed_by_environment():
        return (f"**LAN mode, uploads only**: the app listens on `{shown}`, so other machines can "
                "open it; no page reads a path on the server (upload files instead). Set "
                f"`{ALLOW_SERVER_PATHS_ENV}=1` to allow paths under chosen roots.")
    names = ", ".join(f"`{root}`" for root in allowed_roots())
    return (f"**LAN mode with server paths**: the app listens on `{shown}`; paths are accepted "
            f"only under {names} (`{SERVER_PATH_ROOTS_ENV}` adds roots).")
