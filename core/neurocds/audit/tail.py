"""The head file, and opening the log at its tail: where the chain ends, read from the head file.

The head file says where the last record ends (``offset``) and how long its line is,
and where the last checkpoint record lies; the writer rewrites it after every append.
Opening reads a bounded window before that offset and checks the records in it (the
first one on its own, the rest as a chain); the caller then scans what follows the
offset (records a writer appended before it could update the head, or a torn tail).
So opening and the first append cost the same on a log of ten records or ten million.

The head file is not trusted for more than a starting point: anything in it that the
log does not bear out (the line at ``offset`` is not the record it names, the
checkpoint is not where it says) makes the caller fall back to a full scan from the
first record, which is what a log written before the head held an index gets too.
A record damaged before the window is not seen here: ``neurocds audit verify``
(streaming, about 20,000 records/s) finds it, and the service runs it at start.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

from neurocds.audit._canon import canonical_json
from neurocds.audit.chain import HEAD_NAME, LOG_NAME, ScanResult, check_alone, read_head
from neurocds.audit.files import replace_durably
from neurocds.audit.records import utc_now
from neurocds.audit.store_state import StoreState

HEAD_BLOCK = 512  # bytes of the head file, rewritten in place (see write_head)
TAIL_WINDOW = 64 * 1024  # bytes before the head's offset whose records are checked on open
_MAX_WINDOW = 64 * 1024 * 1024  # a window this large and still without two lines: scan it all


def head_bytes(sequence: int, digest: str, index: Mapping[str, Any] | None = None) -> bytes:
    """The head file's content naming record ``sequence`` (see :func:`write_head`)."""
    return canonical_json({**(index or {}), "sequence": sequence, "hash": digest, "updated_at": utc_now()})


def write_head(directory: Path, sequence: int, digest: str, index: Mapping[str, Any] | None = None) -> None:
    """Rewrite the head file: the last record's sequence and hash, and ``index``
    (:meth:`StoreState.head_index`: where that record ends, and the last checkpoint)."""
    write_head_file(directory / HEAD_NAME, head_bytes(sequence, digest, index))


def write_head_file(path: Path | str, data: bytes) -> None:
    """Put ``data`` (from :func:`head_bytes`) in the head file at ``path``, or in the pending head."""
    # A head that lags after a crash is tolerated (and recorded on the next append), so
    # the head is not fsynced: the records are, before this, and one fsync per group
    # commit instead of two is what lets the log take thousands of decisions/s. It is
    # rewritten in place as one 512-byte block (a rename cost more than the fsync it
    # saves): a block-sized write lands whole or not at all, so a power loss leaves
    # the old head or the new one. Other processes read it meanwhile (group commit
    # publishes it outside the append lock): the write holds an exclusive flock, the
    # reads (:func:`neurocds.audit.chain.read_whole`) a shared one. A head too long for
    # one block (many quarantined files) is replaced by a rename instead.
    if len(data) < HEAD_BLOCK:
        block = data.ljust(HEAD_BLOCK - 1) + b"\n"
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            fd = -1
        if fd >= 0:
            try:
                if os.fstat(fd).st_size == HEAD_BLOCK:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    os.pwrite(fd, block, 0)
                    return
            finally:
                os.close(fd)  # closing releases the flock
        data = block[:-1]
    replace_durably(Path(path), data + b"\n", sync_directory=False)  # a lagging head is tolerated (above)


def _read(fd: int, start: int, end: int) -> bytes:
    return os.pread(fd, end - start, start)


def state_from_head(directory: Path, inode: int, size: int) -> StoreState | None:
    """The store state at the start of the tail window (``None``: scan the whole log).

    The returned state's ``scan`` ends after the first whole record in the window; the
    caller scans on from there, which checks every later link up to the file's end.
    """
    head, _ = read_head(directory)
    if head is None:
        return None
    offset, length = head.get("offset"), head.get("last_length")
    if not _is_count(offset) or not _is_count(length) or not 0 < length <= offset <= size:
        return None
    start = max(0, offset - max(TAIL_WINDOW, 2 * length))
    with open(directory / LOG_NAME, "rb") as fh:
        fd = fh.fileno()
        while True:
            if start == 0:
                return None  # the window reaches the first record: check everything
            data = _read(fd, start, offset)
            first = data.find(b"\n")
            second = data.find(b"\n", first + 1) if first >= 0 else -1
            if second >= 0:
                break
            if offset - start >= _MAX_WINDOW:
                return None
            start = max(0, offset - 2 * (offset - start))
        if not data.endswith(b"\n"):
            return None
        last = check_alone(data[len(data) - length : -1])
        if last is None or last["sequence"] != head["sequence"] or last["hash"] != head["hash"]:
            return None  # the head's offset does not point at the record it names
        anchor_line = data[first + 1 : second + 1]
        anchor = check_alone(anchor_line[:-1])
        if anchor is None:
            return None  # damage in the window: a full scan names it exactly
        end = start + second + 1
        state = StoreState(
            inode=inode,
            scan=ScanResult(anchor["sequence"], anchor["hash"], end, anchor_line, records=0),
        )
        state.note(anchor, start + first + 1, end)
        if not _restore_index(state, head, fd, anchor["sequence"]):
            return None
    return state


def _restore_index(state: StoreState, head: dict[str, Any], fd: int, anchor_sequence: int) -> bool:
    """Fill in what a full scan would have noted before the window; ``False``: not borne out."""
    quarantined = head.get("quarantined", [])
    mirrored = head.get("mirrored_through", 0)
    if not isinstance(quarantined, list) or not all(isinstance(n, str) for n in quarantined):
        return False
    if not _is_count(mirrored):
        return False
    state.quarantined |= set(quarantined)
    state.mirrored_through = mirrored
    cp = head.get("checkpoint")
    if cp is None:
        return True
    if not isinstance(cp, dict) or not all(_is_count(cp.get(k)) for k in ("sequence", "offset", "length")):
        return False
    if cp["sequence"] >= anchor_sequence:
        return True  # inside the window: the scan notes it
    line = _read(fd, cp["offset"], cp["offset"] + cp["length"])
    record = check_alone(line[:-1]) if line.endswith(b"\n") else None
    if record is None or record["sequence"] != cp["sequence"] or record.get("type") != "checkpoint":
        return False
    state.note(record, cp["offset"], cp["offset"] + cp["length"])
    state.recent.pop(cp["sequence"], None)  # only the window's records are recent
    return True


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
