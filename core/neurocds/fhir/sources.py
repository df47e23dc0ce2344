"""Where mapping tables come from: the ``neurocds_fhir_mappings`` hook, called as pack code.

Tables arrive from two kinds of plugin: the ``neurocds.fhir_maps`` entry points (the
built-in tables' plugin is one) and the packs an engine loaded. Both are third-party
code to this module, so each is imported and called through
:class:`~neurocds.rules.hooks.HookRunner` like every other hook (a time budget, its
exceptions caught on a worker thread), and its answer is checked. A plugin whose hook
raises, hangs, or returns anything but existing, valid table files is left out and
named in a :class:`MappingSourceFailure`; the other plugins' tables still load. The
failures go to the caller's list, or to the ``neurocds.fhir`` logger when it passes none.

``NEUROCDS_FHIR_MAPS`` (comma-separated entry-point names) limits which
``neurocds.fhir_maps`` entry points load, as ``NEUROCDS_PACKS`` does for packs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePath
from typing import Any

import pluggy

from neurocds import hookspecs
from neurocds.errors import PackLoadError
from neurocds.fhir.mapping import MappingTableError, read_table
from neurocds.installed import entry_points
from neurocds.rules.hook_answers import checked_call, unwrap
from neurocds.rules.hooks import HookFailure, HookRunner
from neurocds.rules.packs import call_impl, find_impl, import_plugin, parse_allowlist, register_vetted

FHIR_MAPS_ALLOWLIST_ENV = "NEUROCDS_FHIR_MAPS"
HOOK = "neurocds_fhir_mappings"
MAX_TABLES_PER_PLUGIN = 256
_log = logging.getLogger("neurocds.fhir")
# Plain strings and pathlib's own classes only: a subclass's methods would be pack code
# running outside the budget, on this thread.
_PATH_TYPES = (str, type(Path()), type(PurePath()))


@dataclass(frozen=True)
class MappingSourceFailure:
    """A plugin whose mapping tables were left out, and why (its hook's fault, in words)."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"FHIR mapping tables of {self.source} left out: {self.message}"


def default_mapping_paths(
    problems: list[MappingSourceFailure] | None = None,
    *,
    runner: HookRunner | None = None,
    allow: str | Sequence[str] | None = None,
) -> list[Path]:
    """The tables of the ``neurocds.fhir_maps`` entry points (the built-in ones among them).

    A fresh plugin manager each call: no module-global registry, so callers (tests,
    engines, the service) never share hook state.

    :param allow: entry-point names to load (``None``: ``NEUROCDS_FHIR_MAPS``, or all).
    """
    runner = runner or HookRunner()
    allowed = parse_allowlist(os.environ.get(FHIR_MAPS_ALLOWLIST_ENV) if allow is None else allow)
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    failures: list[MappingSourceFailure] = []
    paths: list[Path] = []
    group = entry_points(hookspecs.FHIR_MAPS_ENTRY_POINT_GROUP)
    for ep in sorted(group, key=lambda e: (e.name, e.value)):
        if allowed is not None and ep.name not in allowed:
            continue
        name = f"fhir-maps:{ep.name}"
        source = f"entry point {ep.name} = {ep.value}"
        try:
            if pm.get_plugin(name) is not None:
                raise PackLoadError(f"entry point {ep.name!r} is declared twice")
            # Read by pluggy on a budgeted worker: only the vetted hooks reach the manager.
            plugin = register_vetted(pm, name, import_plugin(runner, name, source, ep), source, runner)
        except PackLoadError as exc:
            failures.append(MappingSourceFailure(source, str(exc)))
            continue
        paths += _paths_of(runner, pm, plugin, name, source, failures)
    _report(failures, problems)
    return paths


def engine_mapping_paths(engine: Any, problems: list[MappingSourceFailure] | None = None) -> list[Path]:
    """Built-in tables plus those the engine's packs add through the hook, each file once.

    Every FHIR entry point (service, ``evaluate --fhir``, population runs) uses this, so a
    pack's mapping tables apply wherever that pack's rules do. Hooks run on the engine's
    own :class:`HookRunner` (a hook that hung once is not waited for again).
    """
    runner = getattr(engine, "hook_runner", None) or HookRunner()
    failures: list[MappingSourceFailure] = []
    paths = default_mapping_paths(failures, runner=runner)
    pm: pluggy.PluginManager | None = getattr(engine, "pm", None)
    # Only the packs that loaded: a pack left out of the rules is left out of the tables too.
    loaded = {id(pack.plugin) for pack in getattr(engine, "packs", ())}
    for name, plugin in sorted(pm.list_name_plugin() if pm is not None else [], key=lambda item: str(item[0])):
        if pm is not None and id(plugin) in loaded:
            paths += _paths_of(runner, pm, plugin, str(name), f"pack plugin {name}", failures, check_tables=True)
    _report(failures, problems)
    seen: set[Path] = set()
    unique = []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _paths_of(
    runner: HookRunner,
    pm: pluggy.PluginManager,
    plugin: Any,
    name: str,
    source: str,
    failures: list[MappingSourceFailure],
    *,
    check_tables: bool = False,
) -> list[Path]:
    """One plugin's table files, or none (and a failure) when its hook misbehaves."""
    impl = find_impl(pm, HOOK, plugin)
    if impl is None:
        return []
    try:
        # The answer is checked on the budgeted worker with the call: reading a list subclass
        # or its items runs pack code too.
        produce = partial(call_impl, impl)
        answer = runner.loading.call(name, HOOK, checked_call, produce, _checked_paths)
        paths: list[Path] = unwrap(answer)
        if check_tables:  # a pack's own table must not stop the others' (clashes between tables still do)
            for path in paths:
                read_table(path)
    except (HookFailure, MappingTableError) as exc:
        failures.append(MappingSourceFailure(source, str(exc)))
        return []
    return paths


def _checked_paths(answer: Any) -> list[Path]:
    if answer is None:
        return []
    if not isinstance(answer, list | tuple):
        raise HookFailure(f"{HOOK} must return a list of table files, got {type(answer).__name__}")
    if len(answer) > MAX_TABLES_PER_PLUGIN:
        raise HookFailure(f"{HOOK} returned {len(answer)} files (at most {MAX_TABLES_PER_PLUGIN})")
    paths = []
    for item in answer:
        if type(item) not in _PATH_TYPES:
            raise HookFailure(f"{HOOK} must return paths, got {type(item).__name__}")
        path = Path(item)
        if not path.is_file():
            raise HookFailure(f"{HOOK} names {str(path)[:200]!r}, which is not a file")
        paths.append(path)
    return paths


def _report(failures: list[MappingSourceFailure], problems: list[MappingSourceFailure] | None) -> None:
    if problems is not None:
        problems.extend(failures)
        return
    for failure in failures:
        _log.warning("%s", failure)
