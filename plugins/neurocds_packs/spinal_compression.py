"""The spinal-compression pack: cord, cauda equina and root compression, infection, tumour, trauma."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neurocds.hookspecs import RulePack, hookimpl
from neurocds_packs._files import builtin_pack

PACK = "spinal-compression"
VERSION = "2.0.0"

EPIDURAL_HAEMATOMA_FINDING = "spinal.epidural_haematoma_suspected"
# packs-v2 raises the haematoma on its clinical trigger whatever the spine MRI shows. A scan
# recorded as showing no compression is then worth a word: it settles the question only if
# it was done after the weakness began and covered the whole spine.
NO_COMPRESSION_ON_MRI = {"normal": "normal", "intrinsic_cord_lesion": "showing a lesion within the cord"}


@hookimpl
def neurocds_register_packs() -> list[RulePack]:
    return [
        builtin_pack(
            PACK,
            VERSION,
            "Spinal cord, cauda equina and nerve root compression, spinal infection, tumour and trauma.",
            depends_on=("weakness-pattern",),
            # The findings neurocds_finding_detail below details: it is called for these only.
            detailed_findings=(EPIDURAL_HAEMATOMA_FINDING,),
        )
    ]


@hookimpl
def neurocds_finding_detail(
    finding_id: str, rule_id: str, facts: Mapping[str, Any], derived: Mapping[str, Any]
) -> str | None:
    """Say what a recorded spine MRI that shows no compression means for a suspected epidural haematoma."""
    if finding_id != EPIDURAL_HAEMATOMA_FINDING:
        return None
    shown = NO_COMPRESSION_ON_MRI.get(str(facts.get("imaging", {}).get("spine_mri")))
    if shown is None:
        return None
    return (
        f"A spine MRI is recorded as {shown}: a haematoma is unlikely if that scan covered the whole "
        "spine and was done after the weakness began; if not, repeat the MRI now."
    )
