"""Find packs without loading their rules, and read each pack's ``pack.yaml`` metadata.

``pack.yaml`` sits beside the pack's rule files (in the folder of its first rule
file) and is validated against ``schemas/pack-metadata.schema.json``: version,
release and revision dates, developer, funding, bibliography, the facts a compute
hook reads, and reasoned lint ignores. The loader never reads it as a rule file.

Lint, ``pack show`` and the source-attribute sheet must work on a pack the engine
refuses to load, so packs are found here through the same entry points and
registration call as the engine's, but their rule files are only read, not built.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from neurocds.errors import NeurocdsError
from neurocds.resources import load_schema
from neurocds.rules.hooks import HookRunner
from neurocds.rules.packs import LoadedPack, discover, import_plugin, new_plugin_manager, register_plugin

METADATA_FILE = "pack.yaml"


class PackNotFound(NeurocdsError):
    """A pack named on the command line is not installed."""

    def __init__(self, names: Iterable[str], installed: Iterable[str]) -> None:
        self.names, self.installed = sorted(names), sorted(installed)
        super().__init__(f"pack(s) not installed: {', '.join(self.names)} (installed: {', '.join(self.installed)})")


@dataclass
class PackMetadata:
    """A pack's ``pack.yaml``: its data (``None`` when absent or unreadable) and what is wrong with it."""

    path: Path | None
    data: dict[str, Any] | None
    problems: list[tuple[str, str]] = field(default_factory=list)  # (JSON pointer, message)

    def get(self, key: str, default: Any = None) -> Any:
        return default if self.data is None else self.data.get(key, default)

    def computed_reads(self) -> dict[str, list[str]]:
        """Computed derived-fact name -> the dotted fact paths the compute hook reads for it."""
        return {name: list(spec.get("reads", ())) for name, spec in (self.get("computed_facts") or {}).items()}

    def ignores(self) -> list[dict[str, str]]:
        return list((self.get("lint") or {}).get("ignore", ()))


def installed_packs(plugins: Sequence[Any] = ()) -> list[LoadedPack]:
    """Every installed pack (entry points) plus ``plugins``, registered but with no rule built."""
    pm = new_plugin_manager()
    runner = HookRunner()  # pack code (imports, register hooks) runs guarded, as in the Engine
    loaded: list[LoadedPack] = []
    candidates: list[tuple[str, str, Any]] = [
        (name, source, import_plugin(runner, name, source, ep)) for name, source, ep in discover(None)
    ]
    for item in plugins:
        name, plugin = item if isinstance(item, tuple) else (getattr(item, "__name__", repr(item)), item)
        candidates.append((name, f"plugin object {name}", plugin))
    for name, source, plugin in candidates:
        loaded.extend(register_plugin(pm, name, plugin, source, runner))
    return sorted(loaded, key=lambda p: p.name)


def select(packs: Sequence[LoadedPack], names: Iterable[str]) -> list[LoadedPack]:
    """The packs named (all of them when ``names`` is empty); an unknown name is :class:`PackNotFound`."""
    wanted = list(names)
    if not wanted:
        return list(packs)
    by_name = {p.name: p for p in packs}
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise PackNotFound(missing, by_name)
    return [by_name[n] for n in wanted]


def with_dependencies(packs: Sequence[LoadedPack], pack: LoadedPack) -> list[LoadedPack]:
    """``pack`` and every pack it depends on, transitively (those installed)."""
    by_name = {p.name: p for p in packs}
    out: dict[str, LoadedPack] = {}
    todo = [pack.name]
    while todo:
        name = todo.pop()
        if name in out or name not in by_name:
            continue
        out[name] = by_name[name]
        todo.extend(by_name[name].record.depends_on)
    return list(out.values())


def metadata_path(pack: LoadedPack) -> Path | None:
    return pack.rule_files[0].parent / METADATA_FILE if pack.rule_files else None


def _plain(value: Any) -> Any:
    """YAML dates become ISO strings (the schema speaks JSON)."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def read_metadata(pack: LoadedPack) -> PackMetadata:
    """The pack's ``pack.yaml``, validated; problems are listed, never raised."""
    path = metadata_path(pack)
    if path is None or not path.is_file():
        return PackMetadata(path, None, [("", f"no {METADATA_FILE} beside the rule files")])
    try:
        data = _plain(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return PackMetadata(path, None, [("", f"cannot read {METADATA_FILE}: {exc}")])
    if not isinstance(data, dict):
        return PackMetadata(path, None, [("", f"{METADATA_FILE} must be a mapping")])
    validator = jsonschema.Draft202012Validator(
        load_schema("pack-metadata.schema.json"), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    problems = [
        ("/" + "/".join(str(p) for p in error.absolute_path), error.message)
        for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if data.get("name") not in (None, pack.name):
        problems.append(("/name", f"names pack {data.get('name')!r}, but the pack registers as {pack.name!r}"))
    if data.get("version") not in (None, pack.record.version):
        problems.append(("/version", f"says {data.get('version')!r}, but the pack registers {pack.record.version!r}"))
    return PackMetadata(path, data, problems)


def metadata_of(packs: Iterable[LoadedPack]) -> Mapping[str, PackMetadata]:
    return {p.name: read_metadata(p) for p in packs}
