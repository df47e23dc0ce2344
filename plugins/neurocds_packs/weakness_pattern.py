"""The weakness-pattern foundation pack: derived facts the clinical packs build on."""

from __future__ import annotations

from neurocds.hookspecs import RulePack, hookimpl
from neurocds_packs._files import builtin_pack

PACK = "weakness-pattern"
VERSION = "2.0.0"


@hookimpl
def neurocds_register_packs() -> list[RulePack]:
    return [
        builtin_pack(
            PACK, VERSION, "Weakness patterns (paraparesis, hemiparesis, crossed, UMN/LMN signs) as derived facts."
        )
    ]
