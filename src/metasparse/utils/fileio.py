"""Crash-safe file output shared by every command that writes a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Portable fallback: os.umask can only be read by setting it, so set it back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(
    path: str | os.PathLike[str], data: bytes | bytearray | memoryview | str, overwrite: bool = True
) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one.

    The data goes to a temporary file in the same directory (``os.replace`` is only atomic
    within one file system), is flushed and fsynced, and is then published under ``path``; the
    directory is fsynced too so that the publication itself survives a crash. A ``str`` is written
    as UTF-8. The new file gets the mode of the file it replaces, or the usual ``0o666 & ~umask``
    (``mkstemp`` would otherwise leave it readable by the owner only). Returns the path.

    ``overwrite=False`` publishes only a new file, in one step that fails when the name is taken
    (a hard link, which never replaces): of two writers racing for the same new file one wins and
    the other gets ``FileExistsError``, leaving the winner's file untouched. Where the file system
    has no hard links, the name is claimed with ``O_EXCL`` (an empty file) and then replaced.
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    directory = target.parent  # "." for a bare file name
    mode = 0o666 & ~_current_umask()
    if overwrite:
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            pass
    descriptor, temporary_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as temporary:
            temporary.write(payload)
            temporary.flush()
            os.fsync(temporary.fileno())
        os.chmod(temporary_name, mode)
        if overwrite:
            os.replace(temporary_name, target)
        else:
            _publish_new(temporary_name, target)
    except BaseException:
        try:
            os.unlink(temporary_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)
    return target


def _publish_new(temporary_name: str, target: Path) -> None:
    """Give the complete temporary file the name ``target`` unless that name exists (``FileExistsError``)."""
    try:
        os.link(temporary_name, target)
    except FileExistsError:
        raise
    except OSError:
        # No hard links here (some network and FUSE file systems): claim the name atomically, then
        # fill it by a rename, so that a reader sees an empty file at worst, never a partial one.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.replace(temporary_name, target)
        return
    os.unlink(temporary_name)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable; a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def save_figure(figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Save a matplotlib figure through ``write_atomic`` (the format follows the file's suffix)."""
    import io

    target = Path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=target.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    return write_atomic(target, buffer.getvalue())
