"""The neuromuscular pack: generalized and systemic causes of weakness (metabolic, toxic, immune)."""

from __future__ import annotations

from neurocds.hookspecs import RulePack, hookimpl
from neurocds_packs._files import builtin_pack

PACK = "neuromuscular"
VERSION = "1.0.0"


@hookimpl
def neurocds_register_packs() -> list[RulePack]:
    return [
        builtin_pack(
            PACK,
            VERSION,
            "Generalized and systemic causes: metabolic, nerve, junction and muscle disease, toxins.",
            depends_on=("weakness-pattern",),
        )
    ]
