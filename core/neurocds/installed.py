"""What is installed: distributions' versions and entry points, read as ``importlib.metadata`` reads them.

Every engine asks which packs are installed (the ``neurocds.packs`` entry points) and
which version of neurocds it is. ``importlib.metadata`` answers both, but importing it
(with ``email``, ``zipfile``, ``csv`` and ``importlib.abc``) executes about 113 M
instructions, a fifth of an ``Engine()`` start, and naming a distribution parses its
``METADATA`` with the ``email`` package. For the layout it searches in the common case
(folders on ``sys.path`` holding ``*.dist-info`` / ``*.egg-info`` folders), this module
reads the same files with the same rules: ``sys.path`` in order, the first distribution
of a normalised name wins, ``entry_points.txt`` split into ``[group]`` sections of
``name = value`` lines, ``Name`` and ``Version`` taken from the first headers of
``METADATA`` (else ``PKG-INFO``). Where the environment holds anything else, an archive on
``sys.path`` or a meta-path finder other than the standard ``PathFinder`` that can list
distributions, it hands the question to ``importlib.metadata`` itself, so the answer
never differs (``tests/core/test_installed.py`` compares the two).

May import: the standard library only.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterator
from importlib import import_module
from typing import Any, NamedTuple

INFO_SUFFIXES = (".dist-info", ".egg-info")
# The grammar importlib.metadata.EntryPoint.load applies to a value (``module:attr [extras]``).
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


def normalize(name: str) -> str:
    """PEP 503 normalisation with dashes as underscores, as ``importlib.metadata`` matches names."""
    # String methods, not re.sub: called for every metadata folder on sys.path at each start.
    name = name.lower().replace("-", "_").replace(".", "_")
    while "__" in name:
        name = name.replace("__", "_")
    return name


class Distribution:
    """One metadata folder (``*.dist-info`` / ``*.egg-info``) found on ``sys.path``.

    A plain class, as :class:`EntryPoint` is a named tuple: a dataclass costs ~3 M
    instructions to create at import, a noticeable share of a start.
    """

    __slots__ = ("_headers", "folder", "in_egg", "path")

    def __init__(self, path: str, folder: str, *, in_egg: bool = False) -> None:
        self.path = path
        self.folder = folder  # the metadata folder's own name
        self.in_egg = in_egg  # the EGG-INFO folder of an ``*.egg`` folder on sys.path
        self._headers: dict[str, str] | None = None

    @property
    def folder_name(self) -> str:
        """The name ``importlib.metadata`` finds this folder by (normalised; an egg's in legacy form)."""
        if self.in_egg:
            egg = os.path.basename(os.path.dirname(self.path)).lower()
            return egg.rpartition(".")[0].partition("-")[0].replace("-", "_")
        return normalize(self.folder.lower().rpartition(".")[0].partition("-")[0])

    def __repr__(self) -> str:
        return f"Distribution({self.path!r})"

    def read_text(self, filename: str) -> str | None:
        try:
            with open(os.path.join(self.path, filename), encoding="utf-8") as fh:
                return fh.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            return None

    @property
    def headers(self) -> dict[str, str]:
        """The first value of each header of ``METADATA`` (or ``PKG-INFO``), by lower-case name."""
        if self._headers is not None:
            return self._headers
        text = self.read_text("METADATA") or self.read_text("PKG-INFO") or self.read_text("") or ""
        found: dict[str, str] = {}
        for line in text.splitlines():
            if not line:
                break  # the body (the long description) starts here
            if line[0] in " \t":
                continue  # a folded header's continuation: Name and Version are never folded
            key, colon, value = line.partition(":")
            if colon:
                found.setdefault(key.strip().lower(), value.lstrip(" \t").rstrip("\r\n"))
        self._headers = found
        return found

    @property
    def name(self) -> str | None:
        return self.headers.get("name")

    @property
    def version(self) -> str | None:
        return self.headers.get("version")

    @property
    def unique_name(self) -> str:
        """What ``importlib.metadata`` tells distributions apart by: the folder's name, else ``Name``."""
        base, ext = os.path.splitext(self.folder)
        if ext in INFO_SUFFIXES:
            return normalize(base.partition("-")[0])
        return normalize(self.name or "")

    def entry_points(self, wanted: str) -> Iterator[EntryPoint]:
        """The entry points of group ``wanted`` (a file without that section header is not parsed)."""
        text = self.read_text("entry_points.txt")
        if not text or f"[{wanted}]" not in text:
            return
        group = None
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                group = line.strip("[]")
            elif group == wanted:
                name, _, value = line.partition("=")
                yield EntryPoint(name.strip(), value.strip(), group, self)


class EntryPoint(NamedTuple):
    """An entry point as ``importlib.metadata.EntryPoint`` has it: ``name = value`` in ``group``."""

    name: str
    value: str
    group: str
    dist: Distribution | Any | None = None

    def load(self) -> Any:
        """Import the module the value names and follow its attributes (as ``importlib.metadata`` does)."""
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"entry point {self.name} = {self.value} is not 'module' or 'module:attribute'")
        module = import_module(match.group("module"))
        attrs = filter(None, (match.group("attr") or "").split("."))
        return functools.reduce(getattr, attrs, module)


def _only_plain_folders() -> bool:
    """Whether ``importlib.metadata`` would find distributions only in folders this module reads."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is not PathFinder and getattr(finder, "find_distributions", None) is not None:
            return False
    return not any(entry and os.path.isfile(entry) for entry in sys.path)


def distributions() -> Iterator[Distribution]:
    """Every metadata folder on ``sys.path``, in the order ``importlib.metadata`` visits them."""
    for entry in sys.path:
        try:
            children = os.listdir(entry or ".")
        except OSError:
            continue
        in_egg = os.path.basename(entry).lower().endswith(".egg")
        for child in children:
            low = child.lower()
            if low.endswith(INFO_SUFFIXES) or (in_egg and low == "egg-info"):
                yield Distribution(os.path.join(entry, child), child, in_egg=not low.endswith(INFO_SUFFIXES))


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group``, one distribution per name, as ``importlib.metadata.entry_points``."""
    if not _only_plain_folders():
        from importlib.metadata import entry_points as from_metadata

        return [EntryPoint(ep.name, ep.value, ep.group, ep.dist) for ep in from_metadata(group=group)]
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for dist in distributions():
        unique = dist.unique_name
        if unique not in seen:
            seen.add(unique)
            found.extend(dist.entry_points(group))
    return found


def source_name(dist: Any) -> str:
    """``NAME VERSION`` of a distribution (ours, or ``importlib.metadata``'s from the fallback)."""
    if isinstance(dist, Distribution):
        return f"{dist.name} {dist.version}"
    meta = dist.metadata
    return f"{meta['Name']} {meta['Version']}"


def version(name: str) -> str | None:
    """The version of the first distribution called ``name`` on ``sys.path`` (``None``: not installed)."""
    if not _only_plain_folders():
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as from_metadata

        try:
            return from_metadata(name)
        except PackageNotFoundError:
            return None
    wanted, legacy = normalize(name), name.lower().replace("-", "_")
    for dist in distributions():
        if dist.folder_name in (wanted, legacy):
            return dist.version
    return None
