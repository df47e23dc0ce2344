"""The version 1.0.0 rule packs, rebuilt from a copy of their rule files for replay tests.

tests/fixtures/packs-v1/<pack>/*.yaml are the rule files as released in 1.0.0 (packs-v1.md).
They are loaded as inline packs (neurocds.testing) under the built-in pack names and
version 1.0.0, with entry points off, so a decision made with them records exactly what
a 1.0.0 installation recorded, and replaying it against the installed packs shows what
version 2 changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from neurocds.engine import Engine
from neurocds.testing import inline_pack

FIXTURES = Path(__file__).parent / "fixtures" / "packs-v1"
VERSION = "1.0.0"
# Load order and dependencies of the 1.0.0 packs (as their plugin modules declared them).
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "weakness-pattern": (),
    "spinal-compression": ("weakness-pattern",),
    "neuromuscular": ("weakness-pattern",),
    "cerebrovascular": ("weakness-pattern",),
    "treatment-expectation": ("weakness-pattern", "spinal-compression", "neuromuscular"),
}


def v1_plugins(directory: Path) -> list[tuple[str, Any]]:
    """(name, plugin) for each 1.0.0 pack, its rule files merged into one inline rule file under ``directory``."""
    from neurocds_packs.cerebrovascular import neurocds_finding_detail as cerebrovascular_detail

    plugins = []
    for name, depends_on in DEPENDS_ON.items():
        rules: list[dict[str, Any]] = []
        namespace = None
        for path in sorted((FIXTURES / name).glob("*.yaml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            namespace = data["namespace"]
            rules += data["rules"]
        assert namespace is not None, f"no 1.0.0 rule files for {name} under {FIXTURES}"
        # 1.0.0 had one detail hook, the cerebrovascular time window and imaging note, which
        # version 2 keeps unchanged; the neuromuscular medicine names are new in version 2.
        detail = cerebrovascular_detail if name == "cerebrovascular" else None
        plugin = inline_pack(
            directory, name, namespace, rules, version=VERSION, depends_on=depends_on, finding_detail=detail
        )
        plugins.append((name, plugin))
    return plugins


def v1_engine(directory: Path, **kwargs: Any) -> Engine:
    """An engine with the 1.0.0 packs only (the installed ones are not loaded)."""
    return Engine(plugins=v1_plugins(directory), entry_points=False, packs=list(DEPENDS_ON), **kwargs)
