"""Find, register, order and read rule packs: one plugin manager per engine.

Built-in and third-party packs arrive the same way: entry points in the group
``neurocds.packs`` (neurocds' own pyproject declares the built-ins), plus any
plugin objects an embedder passes in. All go through :func:`register_plugin`.
The allowlist (``NEUROCDS_PACKS``, comma-separated pack names) decides which load.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pluggy

from neurocds import hookspecs
from neurocds.errors import PackLoadError, PacksUnavailable
from neurocds.facts.strictjson import canonical_json
from neurocds.hookspecs import ENTRY_POINT_GROUP, RulePack
from neurocds.installed import EntryPoint, entry_points, source_name
from neurocds.rules.cache import LoadCache
from neurocds.rules.hook_answers import check_records, checked_call, unwrap
from neurocds.rules.hooks import HookFailure, HookRunner
from neurocds.rules.ruleset import RuleFile, read_rule_file

ALLOWLIST_ENV = "NEUROCDS_PACKS"
_P = ParamSpec("_P")
_R = TypeVar("_R")


def collector_paused(load: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``load`` with Python's cyclic garbage collector paused, and resume it after.

    Loading builds tens of thousands of long-lived objects (conditions, closures, plan
    slots); each full collection on the way walks all those made so far, which made load
    time grow faster than the rule count (at 4,000 rules, 1.5x the time per rule of 1,000;
    paused, 1.0x, and 40 % less at any size). Reference counting still frees what is
    dropped; cycles made meanwhile wait for the next collection. The collector is resumed
    only if it was running (a caller that paused it keeps it paused), whatever ``load`` raises.
    """

    @functools.wraps(load)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        running = gc.isenabled()
        gc.disable()
        try:
            return load(*args, **kwargs)
        finally:
            if running:
                gc.enable()

    return paused


@dataclass
class LoadedPack:
    """A registered pack with where it came from and the hash of its content."""

    record: RulePack
    source: str
    plugin: Any
    sha256: str = ""
    status: str = "ok"
    error: str | None = None
    failure_kind: str | None = None  # pack_load, or pack_skipped when a pack it needs failed
    rule_files: list[Path] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)  # of its rule files: what its hooks may name

    @property
    def name(self) -> str:
        return self.record.name

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.record.version,
            "sha256": self.sha256,
            "status": self.status,
        }
        if self.error:
            out["error"] = self.error
        return out


def parse_allowlist(value: str | Sequence[str] | None) -> set[str] | None:
    """``None`` means no allowlist (everything installed loads)."""
    if value is None:
        value = os.environ.get(ALLOWLIST_ENV)
        if value is None:
            return None
    names = value.split(",") if isinstance(value, str) else list(value)
    return {n.strip() for n in names if n.strip()}


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _entry_point_source(ep: EntryPoint, read: dict[int, str]) -> str:
    """``entry point NAME = VALUE (DIST VERSION)``; ``read`` keeps each distribution's words,
    since its metadata file is parsed for them (once, not twice per entry point)."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        dist_name = "unknown distribution"
    elif id(dist) in read:
        dist_name = read[id(dist)]
    else:
        dist_name = read.setdefault(id(dist), source_name(dist))
    return f"entry point {ep.name} = {ep.value} ({dist_name})"


def discover(allow: set[str] | None) -> list[tuple[str, str, EntryPoint]]:
    """Allowlisted entry points, sorted by name: (name, source, entry point); see :func:`import_plugin`."""
    seen: dict[str, str] = {}
    found: list[tuple[str, str, EntryPoint]] = []
    group = entry_points(ENTRY_POINT_GROUP)  # held: the ids in ``read`` are of its distributions
    read: dict[int, str] = {}
    for ep in sorted(group, key=lambda e: (e.name, e.value)):
        source = _entry_point_source(ep, read)
        if ep.name in seen:
            if seen[ep.name] == source:
                continue  # the same distribution seen twice on sys.path
            raise PackLoadError(f"two plugins are named {ep.name!r}: {seen[ep.name]} and {source}", source=source)
        seen[ep.name] = source
        if allow is not None and ep.name not in allow:
            continue
        found.append((ep.name, source, ep))
    return found


def import_plugin(runner: HookRunner, name: str, source: str, ep: EntryPoint) -> Any:
    """Import an entry point's plugin (pack code: guarded like a hook)."""
    try:
        return runner.loading.call(name, "import", ep.load)
    except HookFailure as exc:
        raise PackLoadError(f"cannot import plugin: {exc}", pack=name, source=source) from exc


class VettedPlugin:
    """What the plugin manager holds for a plugin: its ``neurocds_*`` hooks and nothing else.

    pluggy walks every attribute of a plugin it registers (``dir()``, then each name) and
    compares it with the plugins already registered (``==``); on a pack's own object that
    runs pack code (``__dir__``, ``__eq__``, descriptors, ``__wrapped__`` chains) on the
    caller's thread, with no limit. So :func:`vet_plugin` lets pluggy read the pack on a
    budgeted worker (into a throw-away plugin manager), and only this object, which runs
    no pack code until a hook is called, is registered with the engine's.
    """

    def __init__(self, name: str, hooks: Mapping[str, Callable[..., Any]]) -> None:
        self.__dict__.update(hooks)
        self._vetted_name = name

    def __repr__(self) -> str:
        return f"<neurocds plugin {self._vetted_name!r}>"


def vet_plugin(name: str, plugin: Any) -> tuple[bool, Any]:
    """Run on a worker: ``(True, VettedPlugin)``, or ``(False, why)`` when pluggy refuses the plugin."""
    # Without the specs (adding them costs 2/3 of vetting): the arguments are checked below.
    scratch = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    try:
        scratch.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        return False, f"plugin does not match the hook API: {exc}"
    hooks: dict[str, Callable[..., Any]] = {}
    for hook_name in hookspecs.HOOK_NAMES:
        caller = getattr(scratch.hook, hook_name, None)
        impls = caller.get_hookimpls() if caller is not None else []
        if len(impls) > 1:  # which one would run is pluggy's ordering, not the author's intent
            return False, f"plugin implements {hook_name} {len(impls)} times (at most once)"
        if not impls:
            continue
        impl = impls[0]
        unknown = sorted(set(impl.argnames) - set(_spec_args(hook_name)))
        if unknown:
            return False, (
                f"plugin does not match the hook API: {hook_name} asks for {', '.join(unknown)}, which the "
                f"hook does not pass (it passes: {', '.join(_spec_args(hook_name)) or 'nothing'})"
            )
        if impl.hookwrapper or impl.wrapper:
            return False, f"{hook_name} is declared a wrapper: neurocds calls each pack's hooks on their own"
        # bool() here: the options are the pack's objects, and pluggy tests them when it registers.
        order = bool(impl.tryfirst), bool(impl.trylast)
        hooks[hook_name] = _forwarder(hook_name, impl.function, tuple(impl.argnames), *order)
    return True, VettedPlugin(name, hooks)


def _spec_args(hook_name: str) -> tuple[str, ...]:
    code = getattr(hookspecs, hook_name).__code__
    return tuple(code.co_varnames[: code.co_argcount])


def _forwarder(
    hook_name: str, function: Callable[..., Any], argnames: tuple[str, ...], tryfirst: bool, trylast: bool
) -> Callable[..., Any]:
    """A hook implementation taking every argument of the spec and passing the pack's function
    the ones it asked for (pluggy lets an implementation accept a subset)."""
    spec_args = _spec_args(hook_name)
    positions = [spec_args.index(arg) for arg in argnames]  # pluggy checked they are the spec's

    if positions == list(range(len(spec_args))):  # the usual case: every argument, in order

        def forward(*args: Any) -> Any:
            return function(*args)

    else:

        def forward(*args: Any) -> Any:
            return function(*[args[i] for i in positions])

    forward.__name__ = forward.__qualname__ = hook_name
    forward.__wrapped__ = getattr(hookspecs, hook_name)  # type: ignore[attr-defined]  # pluggy reads the spec's parameters: it passes them all
    marked: Callable[..., Any] = hookspecs.hookimpl(tryfirst=tryfirst, trylast=trylast)(forward)
    return marked


def register_vetted(pm: pluggy.PluginManager, name: str, plugin: Any, source: str, runner: HookRunner) -> VettedPlugin:
    """Register ``plugin`` as a :class:`VettedPlugin`: pluggy reads the pack's object on a worker
    within the load budget, so a plugin that hangs or raises there is a :class:`PackLoadError`."""
    if pm.get_plugin(name) is not None:
        raise PackLoadError(f"plugin name {name!r} registered twice", source=source)
    try:
        answer = runner.loading.call(name, "registration", vet_plugin, name, plugin)
        vetted: VettedPlugin = unwrap(answer)
    except HookFailure as exc:
        raise PackLoadError(str(exc), pack=name, source=source) from exc
    pm.register(vetted, name=name)  # our own object: pluggy's walk runs no pack code
    return vetted


def register_plugin(
    pm: pluggy.PluginManager, name: str, plugin: Any, source: str, runner: HookRunner
) -> list[LoadedPack]:
    """Register one plugin (built-in or third-party alike) and collect its RulePack records.

    A plugin whose register hook fails is unregistered again: none of its hooks is ever called.
    """
    vetted = register_vetted(pm, name, plugin, source, runner)
    impl = find_impl(pm, "neurocds_register_packs", vetted)
    if impl is None:
        return []

    def loaded(out: Any) -> list[LoadedPack]:  # runs on the worker: it reaches the records' own code
        try:
            return [
                LoadedPack(record=record, source=source, plugin=vetted, rule_files=[Path(p) for p in record.rule_files])
                for record in check_records(out)
            ]
        except TypeError as exc:  # a rule_files entry that is no path
            raise HookFailure(str(exc)) from None

    try:
        produce = functools.partial(call_impl, impl)
        answer = runner.loading.call(name, "neurocds_register_packs", checked_call, produce, loaded)
        return list(unwrap(answer))
    except HookFailure as exc:
        pm.unregister(vetted)
        raise PackLoadError(str(exc), pack=name, source=source) from exc


def failed_plugin(name: str, source: str, error: PackLoadError, kind: str = "pack_load") -> LoadedPack:
    """A stand-in for a plugin that could not be imported or registered, so results can name it."""
    return LoadedPack(
        record=RulePack(name=name, version="unknown", rule_files=[]),
        source=source,
        plugin=None,
        status="failed",
        error=str(error),
        failure_kind=kind,
    )


def find_impl(pm: pluggy.PluginManager, hook_name: str, plugin: Any) -> Any:
    """The plugin's own implementation of a hook (called one plugin at a time to isolate failures)."""
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        if impl.plugin is plugin:
            return impl
    return None


def call_impl(impl: Any, **kwargs: Any) -> Any:
    # pluggy lets an implementation accept a subset of the spec's arguments.
    return impl.function(*[kwargs[name] for name in impl.argnames])


def check_unique(packs: Iterable[LoadedPack]) -> None:
    by_name: dict[str, LoadedPack] = {}
    for pack in packs:
        if pack.name in by_name:
            raise PackLoadError(
                f"duplicate pack name {pack.name!r}: from {by_name[pack.name].source} and from {pack.source}",
                pack=pack.name,
                source=pack.source,
            )
        by_name[pack.name] = pack


def dependency_order(
    packs: Sequence[LoadedPack], allow: set[str] | None
) -> tuple[list[LoadedPack], dict[str, PackLoadError]]:
    """Dependencies first, ties broken by name (deterministic), and the packs that cannot load.

    A pack whose dependency is not loaded cannot load; in a dependency cycle the pack
    that closes it (whose ``depends_on`` points back into the chain) is blamed, and the
    others then fail as depending on a failed pack.
    """
    by_name = {p.name: p for p in packs}
    problems: dict[str, PackLoadError] = {}
    for pack in packs:
        for dep in pack.record.depends_on:
            if dep not in by_name and pack.name not in problems:
                hint = " (it is not in the allowlist)" if allow is not None and dep not in allow else " (not installed)"
                problems[pack.name] = PacksUnavailable(
                    f"pack {pack.name!r} depends on {dep!r}, which is not loaded{hint}",
                    unavailable=frozenset({pack.name}),
                    pack=pack.name,
                    source=pack.source,
                )
    ordered: list[LoadedPack] = []
    state: dict[str, int] = {}

    def visit(pack: LoadedPack, chain: tuple[str, ...]) -> None:
        if state.get(pack.name) == 2:
            return
        if state.get(pack.name) == 1:
            loop = (*chain[chain.index(pack.name) :], pack.name)
            closer = by_name[chain[-1]]
            problems.setdefault(
                closer.name,
                PackLoadError("pack dependency cycle: " + " -> ".join(loop), pack=closer.name, source=closer.source),
            )
            return
        state[pack.name] = 1
        for dep in sorted(pack.record.depends_on):
            if dep in by_name:
                visit(by_name[dep], (*chain, pack.name))
        state[pack.name] = 2
        ordered.append(pack)

    for pack in sorted(packs, key=lambda p: p.name):
        visit(pack, ())
    return ordered, problems


def content_hash(pack: LoadedPack, files: Sequence[RuleFile]) -> str:
    """SHA-256 over the pack's name, version, extension schema and each rule file's name and bytes.

    ``files`` are the pack's rule files as :func:`read_rule_file` read them: the hash is of
    the bytes whose rules load, never of a second read that could see other content.
    """
    digest = hashlib.sha256()
    digest.update(f"{pack.name}\0{pack.record.version}\0".encode())
    if pack.record.facts_schema is not None:  # the extension schema changes what is accepted
        digest.update(b"schema\0" + canonical_json(pack.record.facts_schema) + b"\0")
    for file in sorted(files, key=lambda f: f.path.name):
        digest.update(f"{file.path.name}\0{len(file.data)}\0".encode())
        digest.update(file.data)
    return digest.hexdigest()


def read_pack(pack: LoadedPack, cache: LoadCache | None) -> list[dict[str, Any]]:
    """Each of the pack's rule files read once, in order; ``pack.sha256`` is set over those bytes."""
    files = [read_rule_file(path, pack.name, cache) for path in pack.rule_files]
    pack.sha256 = content_hash(pack, files)
    return [file.doc for file in files]
