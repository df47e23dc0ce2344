"""A per-user cache of what an engine checked at load, so the next one starts without checking it again.

What is stored is data, never code: one JSON file per entry. The kinds:
``rule-files``, each rule-file document exactly as YAML/JSON parsing produced it and
``schemas/ruleset.schema.json`` accepted it; ``schemas``, a mark that one composed
facts schema passed the JSON Schema meta-schema check; and ``compile-checks``, a mark
that one sequence of packs (by content hash) compiled and its rules have an order (no
cycle); ``compiled``, the compiled ruleset of one sequence of packs (by content hash), all
but its rules (rebuilt from the rule files). An entry's key is a SHA-256
over everything the stored answer depends on: the neurocds version, the source of
the code that checks (``neurocds.rules``, ``neurocds.facts`` and the reference
backend's rule ordering, so an edited checkout
never reuses a verdict of other code) and the versions of the libraries it uses to
parse and check (PyYAML, jsonschema and its meta-schemas and resolver), and for a rule file the bytes of the ruleset
schema, the file's suffix and its bytes. A hit proves the bytes being loaded are the
bytes that were checked; a changed file, schema, version or checker simply misses.

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
from collections.abc import Mapping
from functools import lru_cache
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


KINDS = ("rule-files", "schemas", "compile-checks", "compiled")


class LoadCache:
    """Checked documents by kind and content key (``folder=None``: a cache that never hits)."""

    def __init__(self, folder: str | os.PathLike[str] | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._usable: dict[str, bool] = {}  # per kind, decided on first use: an unused cache costs nothing
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_setting(cls, setting: bool | str | os.PathLike[str]) -> LoadCache:
        """``True``: where the environment says; ``False``: off; a path: that folder."""
        if setting is True:
            return cls(default_cache_dir())
        return cls(None if setting is False else setting)

    @staticmethod
    def key(*parts: bytes) -> str:
        """A key over ``parts`` (all a stored answer depends on), neurocds' version and checking
        code, and the versions of the libraries that parse and check (:func:`library_versions`)."""
        digest = hashlib.sha256()
        for part in (ENTRY_FORMAT.encode(), __version__.encode(), _code_fingerprint(), library_versions(), *parts):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        """The stored document for ``key``, or ``None`` (a miss, or an entry not to be trusted)."""
        if not self._ready(kind, create=False):
            self.misses += 1
            return None
        assert self.folder is not None
        try:
            with open(self.folder / kind / f"{key}.json", "rb") as fh:
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

    def put(self, kind: str, key: str, document: dict[str, Any]) -> None:
        """Store ``document`` if JSON carries it exactly; a cache that cannot be written is skipped."""
        try:
            text = json.dumps({"format": ENTRY_FORMAT, "key": key, "document": document}, allow_nan=False)
        except (TypeError, ValueError):  # a YAML value JSON cannot hold (a set, NaN): never cached
            return
        # JSON turns non-string keys into strings: only an exact round trip may stand for the file.
        if json.loads(text)["document"] != document or not self._ready(kind, create=True):
            return
        assert self.folder is not None
        import tempfile  # only on a miss: with its imports it is a noticeable share of a warm start

        try:
            fd, temp = tempfile.mkstemp(dir=self.folder / kind, prefix=".tmp-", suffix=".json")
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(temp, self.folder / kind / f"{key}.json")
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)

    def _ready(self, kind: str, *, create: bool) -> bool:
        """Whether the kind's folder exists (made when ``create``) and is this user's alone to write."""
        if self.folder is None or kind not in KINDS:
            return False
        if kind not in self._usable or (create and not self._usable[kind]):
            if create:
                with contextlib.suppress(OSError):
                    self.folder.mkdir(parents=True, mode=0o700, exist_ok=True)
                    (self.folder / kind).mkdir(mode=0o700, exist_ok=True)
            self._usable[kind] = _private_folder(self.folder) and _private_folder(self.folder / kind)
        return self._usable[kind]


@lru_cache(maxsize=1)
def _code_fingerprint() -> bytes:
    """SHA-256 of the source of the modules whose verdicts are stored (read once per process)."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    # The rule-order check of a compile-check entry is the reference backend's dependency_order.
    sources = [*sorted((package / "rules").glob("*.py")), *sorted((package / "facts").glob("*.py"))]
    for source in [*sources, package / "backends" / "reference.py"]:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.digest()


# Import name -> distribution name of the libraries whose verdicts are stored: PyYAML parses
# rule files, jsonschema (with its meta-schemas and reference resolver) checks them and the
# composed facts schema. An upgrade that changes a verdict must not reuse the old one.
CHECKING_LIBRARIES = (
    ("yaml", "PyYAML"),
    ("jsonschema", "jsonschema"),
    ("jsonschema_specifications", "jsonschema-specifications"),
    ("referencing", "referencing"),
)


@lru_cache(maxsize=1)
def library_versions() -> bytes:
    """``name version`` of each checking library, found without importing it (once per process).

    A warm start imports neither PyYAML nor jsonschema, and ``importlib.metadata`` costs a
    noticeable share of one: the version is read from the name of the distribution's
    ``.dist-info`` (or ``.egg-info``) folder beside the package ``importlib.util.find_spec``
    locates, the one that would be imported. Only where there is none (an unusual layout)
    is ``importlib.metadata`` asked.
    """
    import importlib.util

    lines = []
    listings: dict[str, list[str]] = {}
    for module, dist in CHECKING_LIBRARIES:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        found: list[str] = []
        if spec is not None and spec.origin:
            site = os.path.dirname(spec.origin)
            if spec.submodule_search_locations:  # a package: its folder's parent
                site = os.path.dirname(site)
            if site not in listings:
                try:
                    listings[site] = [e for e in os.listdir(site) if e.endswith("-info")]
                except OSError:
                    listings[site] = []
            found = sorted(v for entry in listings[site] if (v := _dist_version(entry, dist)) is not None)
        if spec is not None and not found:
            found = [_metadata_version(dist)]
        lines.append(f"{dist} {','.join(found) if spec is not None else 'absent'}")
    return "\n".join(lines).encode()


def _normal(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _dist_version(entry: str, dist: str) -> str | None:
    """The version in a ``NAME-VERSION.dist-info`` / ``.egg-info`` folder name of ``dist``, else ``None``."""
    for suffix in (".dist-info", ".egg-info"):
        if entry.endswith(suffix):
            name, dash, version = entry[: -len(suffix)].partition("-")
            if dash and _normal(name) == _normal(dist):
                return version.split("-py")[0]  # an egg-info may add "-py3.11"
    return None


def _metadata_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _private_folder(folder: Path) -> bool:
    try:
        info = os.stat(folder, follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    return not hasattr(os, "getuid") or info.st_uid == os.getuid()
