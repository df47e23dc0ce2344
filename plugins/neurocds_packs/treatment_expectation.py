"""The treatment-expectation pack: the seed article's treatment and prognosis statements.

Its rules chain on findings of the clinical packs (``{finding: ...}``). Those packs
are declared dependencies so that a missing one is a load error: without them the
chained findings would never be concluded and this pack would fall silent unnoticed.
"""

from __future__ import annotations

from neurocds.hookspecs import RulePack, hookimpl
from neurocds_packs._files import builtin_pack

PACK = "treatment-expectation"
VERSION = "2.0.0"


@hookimpl
def neurocds_register_packs() -> list[RulePack]:
    return [
        builtin_pack(
            PACK,
            VERSION,
            "What treatment can be expected to achieve: decompression, surgical risk, prognosis, disuse.",
            depends_on=(
                "weakness-pattern",
                "spinal-compression",
                "neuromuscular",
            ),
        )
    ]
