"""The neuromuscular pack: generalized and systemic causes of weakness (metabolic, toxic, immune)."""

from __future__ import annotations

from neurocds.hookspecs import RulePack, hookimpl
from neurocds_packs._files import rule_files

PACK = "neuromuscular"
VERSION = "1.0.0"


@hookimpl
def neurocds_register_packs() -> list[RulePack]:
    return [
        RulePack(
            name=PACK,
            version=VERSION,
            rule_files=rule_files(PACK),
            depends_on=["weakness-pattern"],
            description="Generalized and systemic causes: metabolic, nerve, junction and muscle disease, toxins.",
        )
    ]
