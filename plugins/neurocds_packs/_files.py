"""Locate a built-in pack's rule files, in a wheel or in a checkout."""

from __future__ import annotations

from pathlib import Path

import neurocds_packs
from neurocds.hookspecs import RulePack
from neurocds.resources import data_dir

# Every rule-file type the loader reads (core parses .json as JSON, the others as YAML).
# pyproject.toml's package-data for neurocds_packs.rulesets must ship exactly these, or a
# rule file that works in a checkout would silently vanish from the wheel; a test ties them.
RULE_FILE_SUFFIXES = (".json", ".yaml", ".yml")
# The pack's metadata (version, dates, developer, funding, bibliography) sits beside its rule
# files under this name and is not a rule file (neurocds.authoring.metadata reads it).
PACK_METADATA = "pack.yaml"


def rule_files_in(folder: Path) -> list[Path]:
    """The rule files directly in ``folder``, sorted for a deterministic load order."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.suffix in RULE_FILE_SUFFIXES and path.name != PACK_METADATA
    )


def rule_files(pack: str) -> list[Path]:
    """The pack's rule files under ``rulesets/<pack>/``."""
    return rule_files_in(data_dir(neurocds_packs, "rulesets") / pack)


def builtin_pack(
    name: str,
    version: str,
    description: str,
    depends_on: tuple[str, ...] = (),
    detailed_findings: tuple[str, ...] | None = None,
) -> RulePack:
    """The registration record of a built-in pack whose rule files live in ``rulesets/<name>/``."""
    return RulePack(
        name=name,
        version=version,
        rule_files=rule_files(name),
        depends_on=depends_on,
        description=description,
        detailed_findings=detailed_findings,
    )
