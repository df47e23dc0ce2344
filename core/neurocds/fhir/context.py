"""State shared by the extractors during one conversion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from neurocds.fhir.bundle import Item, PatientChoice, ResourceIndex
from neurocds.fhir.collect import Collector
from neurocds.fhir.mapping import MappingTables
from neurocds.fhir.policy import ConditionPolicy


@dataclass
class Context:
    tables: MappingTables
    now: datetime
    observation_window: timedelta
    medication_window: timedelta
    condition_policy: ConditionPolicy
    index: ResourceIndex
    patient: PatientChoice
    items: list[Item]
    out: Collector

    def of_type(self, *rtypes: str) -> list[Item]:
        return [item for item in self.items if item.rtype in rtypes]

    def after_now(self, item: Item, moment: datetime | None) -> bool:
        """True (and counted) when ``moment`` lies after ``now``: such data is ignored."""
        if moment is not None and moment > self.now:
            self.out.dated_after_now(item.rtype)
            return True
        return False
