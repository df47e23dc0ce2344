"""A per-user cache of checked rule files, so an engine starts without re-parsing and re-validating them.

What is stored is data, never code: one JSON file per entry holding the rule-file
document exactly as YAML/JSON parsing produced it and ``schemas/ruleset.schema.json``
accepted it. An entry's key is a SHA-256 over everything the stored answer depends
on (the neurocds version, the bytes of the ruleset schema, the rule file's suffix and
its bytes), so a hit proves the bytes being loaded are the bytes that were validated;
a changed file, schema or version simply misses.

Where: ``$NEUROCDS_CACHE_DIR``, else ``$XDG_CACHE_HOME/neurocds``, else
``~/.cache/neurocds``. ``NEUROCDS_CACHE=0`` (or ``off``/``no``/``false``) turns it off.

Safety: an entry that cannot be read, is not the JSON this module writes, or names
another key (damaged, truncated, foreign, or from another format) is ignored and
rewritten. Writes go to a temporary file in the same folder and are renamed into
place (readers never see half an entry). The folder is created mode 0700, and a
folder another user owns or others may write to is not used at all: an entry is
trusted as much as the files in one's own home, no more.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neurocds.version import __version__

CACHE_DIR_ENV = "NEUROCDS_CACHE_DIR"
CACHE_SWITCH_ENV = "NEUROCDS_CACHE"
ENTRY_FORMAT = "neurocds-cache/1"
_OFF_WORDS = frozenset({"0", "off", "no", "false"})
# Far above any rule file's parsed size; a bigger entry is not ours and is never read whole.
MAX_ENTRY_BYTES = 64 * 1024 * 1024


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The cache folder the environment asks for, or ``None`` when the cache is turned off."""
    if environ.get(CACHE_SWITCH_ENV, "").strip().lower() in _OFF_WORDS:
        return None
    if environ.get(CACHE_DIR_ENV):
        return Path(environ[CACHE_DIR_ENV])
    base = environ.get("XDG_CACHE_HOME") or ""
    # XDG says a relative value is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "neurocds"


class RuleFileCache:
    """Checked rule-file documents by content key (``folder=None``: a cache that never hits)."""

    def __init__(self, folder: str | os.PathLike[str] | None) -> None:
        self.folder = Path(folder) / "rule-files" if folder is not None else None
        self._usable: bool | None = None  # decided on first use: a cache nobody uses costs nothing
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_setting(cls, setting: bool | str | os.PathLike[str]) -> RuleFileCache:
        """``True``: where the environment says; ``False``: off; a path: that folder."""
        if setting is True:
            return cls(default_cache_dir())
        return cls(None if setting is False else setting)

    @staticmethod
    def key(schema_bytes: bytes, suffix: str, data: bytes) -> str:
        """What a stored document depends on: neurocds' version, the schema, how and what was parsed."""
        digest = hashlib.sha256()
        for part in (ENTRY_FORMAT.encode(), __version__.encode(), schema_bytes, suffix.encode(), data):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored document for ``key``, or ``None`` (a miss, or an entry not to be trusted)."""
        if not self._ready(create=False):
            self.misses += 1
            return None
        assert self.folder is not None
        try:
            with open(self.folder / f"{key}.json", "rb") as fh:
                raw = fh.read(MAX_ENTRY_BYTES + 1)
            entry = json.loads(raw) if len(raw) <= MAX_ENTRY_BYTES else None
        except (OSError, ValueError):  # missing, unreadable, truncated or not JSON
            entry = None
        valid = (
            isinstance(entry, dict)
            and entry.get("format") == ENTRY_FORMAT
            and entry.get("key") == key
            and isinstance(entry.get("document"), dict)
        )
        if not valid:
            self.misses += 1
            return None
        self.hits += 1
        document: dict[str, Any] = entry["document"]  # type: ignore[index]  # checked to be a dict just above
        return document

    def put(self, key: str, document: dict[str, Any]) -> None:
        """Store ``document`` if JSON carries it exactly; a cache that cannot be written is skipped."""
        try:
            text = json.dumps({"format": ENTRY_FORMAT, "key": key, "document": document}, allow_nan=False)
        except (TypeError, ValueError):  # a YAML value JSON cannot hold (a set, NaN): never cached
            return
        # JSON turns non-string keys into strings: only an exact round trip may stand for the file.
        if json.loads(text)["document"] != document or not self._ready(create=True):
            return
        assert self.folder is not None
        try:
            fd, temp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(temp, self.folder / f"{key}.json")
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)

    def _ready(self, *, create: bool) -> bool:
        """Whether the folder exists (made when ``create``) and is this user's alone to write."""
        if self.folder is None:
            return False
        if self._usable is None or (create and not self._usable):
            if create:
                with contextlib.suppress(OSError):
                    self.folder.mkdir(parents=True, mode=0o700, exist_ok=True)
            self._usable = _private_folder(self.folder)
        return self._usable


def _private_folder(folder: Path) -> bool:
    try:
        info = os.stat(folder, follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    return not hasattr(os, "getuid") or info.st_uid == os.getuid()
