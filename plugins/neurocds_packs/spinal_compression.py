"""The spinal-compression pack: cord, cauda equina and root compression, infection, tumour, trauma."""

from __future__ import annotations

from neurocds.hookspecs import RulePack, hookimpl
from neurocds_packs._files import builtin_pack

PACK = "spinal-compression"
VERSION = "2.0.0"


@hookimpl
def neurocds_register_packs() -> list[RulePack]:
    return [
        builtin_pack(
            PACK,
            VERSION,
            "Spinal cord, cauda equina and nerve root compression, spinal infection, tumour and trauma.",
            depends_on=("weakness-pattern",),
        )
    ]
