"""The cerebrovascular pack: stroke patterns, the treatment time window and stroke mimics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neurocds.hookspecs import RulePack, hookimpl
from neurocds_packs._files import builtin_pack

PACK = "cerebrovascular"
VERSION = "2.0.0"

TIME_WINDOW_FINDING = "cerebrovascular.time_critical_window"
STROKE_FINDING = "cerebrovascular.stroke_suspected"
# What the stroke finding adds when brain imaging is recorded: the generic steps still say
# "image now" and "no antiplatelet until haemorrhage is excluded", which a result answers.
IMAGING_NOTE = {
    "haemorrhage": (
        "Brain imaging is recorded as showing haemorrhage: manage as intracerebral haemorrhage "
        "(no antiplatelet, no thrombolysis; lower blood pressure and reverse any anticoagulant "
        "urgently; seek neurosurgical advice)."
    ),
    "ischaemic_stroke": (
        "Brain imaging is recorded as showing ischaemic stroke, so haemorrhage has been excluded on "
        "that scan; reperfusion depends on the time since onset."
    ),
}
# Hours since onset up to which intravenous thrombolysis may be considered (NICE NG128).
THROMBOLYSIS_HOURS = 4.5
# The finding itself only fires up to this limit (packs-v1); thrombectomy may be considered up to it.
THROMBECTOMY_HOURS = 24


@hookimpl
def neurocds_register_packs() -> list[RulePack]:
    return [
        builtin_pack(
            PACK,
            VERSION,
            "Hemiparesis and crossed (brainstem) patterns, the reperfusion time window and stroke mimics.",
            depends_on=("weakness-pattern",),
            # The findings neurocds_finding_detail below details: it is called for these only.
            detailed_findings=(STROKE_FINDING, TIME_WINDOW_FINDING),
        )
    ]


@hookimpl
def neurocds_finding_detail(
    finding_id: str, rule_id: str, facts: Mapping[str, Any], derived: Mapping[str, Any]
) -> str | None:
    """Say which treatment window the recorded time since onset falls in, and what recorded
    brain imaging means for a suspected stroke.

    A declarative rule cannot put a case-specific number into its text, and the
    clinician needs to see at a glance whether thrombolysis is still on the table.
    When imaging shows haemorrhage it never is: then only the time is given, and no
    reperfusion window is named. An anticoagulant qualifies the thrombolysis window.
    """
    if finding_id == STROKE_FINDING:
        brain = facts.get("imaging", {}).get("brain")
        # One note per finding, although two rules (pattern and imaging) can fire it.
        return IMAGING_NOTE.get(brain) if isinstance(brain, str) and rule_id.endswith(".imaging") else None
    if finding_id != TIME_WINDOW_FINDING:
        return None
    hours = facts.get("onset", {}).get("hours_since_onset")
    if not isinstance(hours, int | float) or isinstance(hours, bool):
        return None  # the rule needs the number, so this only guards against misuse
    shown = f"Recorded time since onset: {hours:g} h"
    if facts.get("imaging", {}).get("brain") == "haemorrhage":
        return f"{shown}."  # the haemorrhage rule's own detail says what the window means then
    if hours <= THROMBOLYSIS_HOURS:
        text = (
            f"{shown}, within 4.5 h: intravenous thrombolysis may be considered for ischaemic stroke "
            "once haemorrhage is excluded, and thrombectomy for a proximal large-vessel occlusion."
        )
        if facts.get("history", {}).get("anticoagulated") is True:
            text += (
                " The patient takes an anticoagulant: thrombolysis is usually not given unless coagulation "
                "tests and the time of the last dose show no significant anticoagulant effect; thrombectomy "
                "may still be considered."
            )
        return text
    if hours <= THROMBECTOMY_HOURS:
        return (
            f"{shown}, between 4.5 and 24 h: beyond the usual thrombolysis window, but thrombectomy "
            "may still be considered for a proximal large-vessel occlusion when imaging shows brain "
            "tissue that can be saved."
        )
    return None
