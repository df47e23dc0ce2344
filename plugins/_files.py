"""Locate a built-in pack's rule files, in a wheel or in a checkout."""

from __future__ import annotations

from pathlib import Path

import neurocds_packs
from neurocds.hookspecs import RulePack
from neurocds.resources import data_dir


def rule_files(pack: str) -> list[Path]:
    """The pack's rule files under ``rulesets/<pack>/``, sorted for a deterministic order."""
    folder = data_dir(neurocds_packs, "rulesets") / pack
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.json")])


def builtin_pack(name: str, version: str, description: str, depends_on: tuple[str, ...] = ()) -> RulePack:
    """The registration record of a built-in pack whose rule files live in ``rulesets/<name>/``."""
    return RulePack(
        name=name, version=version, rule_files=rule_files(name), depends_on=depends_on, description=description
    )
