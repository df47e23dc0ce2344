"""Durable file writes shared by the chain store, the head file, quarantine and the checkpoint mirror."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new or renamed file) survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_file(path: str) -> None:
    """fsync the file at ``path``: what any process wrote to it is on disk on return."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be partial)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_synced(path: Path | str, data: bytes, flags: int, mode: int = 0o600, *, exact_mode: bool = False) -> None:
    """Write all of ``data`` to ``path`` opened with ``flags`` (``os.O_APPEND``, ``os.O_CREAT``,
    ``os.O_EXCL`` ...: write-only is implied) and fsync it: on return the bytes are on disk.

    ``mode`` is that of a file it creates, narrowed by the umask as ``open`` does; with
    ``exact_mode`` it is set as given (on the open file, before any byte is written)."""
    fd = os.open(path, os.O_WRONLY | flags, mode)
    try:
        if exact_mode:
            os.fchmod(fd, mode)
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def truncate_synced(path: Path | str, length: int) -> None:
    """Cut ``path`` to ``length`` bytes, fsynced: what was cut off does not come back after a crash."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, length)
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(path: Path, data: bytes, *, sync_directory: bool = True) -> None:
    """Put ``data`` at ``path`` whole or not at all, even across a power loss.

    The bytes go to ``.<name>.tmp`` beside it (mode 0600) and are fsynced before the
    rename, so a crash leaves the old file or the new one, never a renamed empty one.
    ``sync_directory`` then fsyncs the folder so that the rename itself survives; a caller
    that tolerates the old file coming back after a crash (the head file) skips that fsync.
    A write that fails (a full disk) removes its temporary file: in the quarantine
    folder a leftover would read as a file nobody recorded.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write_synced(tmp, data, os.O_CREAT | os.O_TRUNC)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_directory:
        fsync_dir(path.parent)
