"""How FHIR statuses and dates become tri-state facts (the adapter's policy, in one place).

Facts are tri-state: an absent field means *not known*, ``false`` means *asked
and absent*. A FHIR record can only ever prove what it contains, so:

* **No matching resource -> the fact stays absent**, never ``false``.
* **Condition** (``ConditionPolicy``):

  - ``verificationStatus`` *confirmed* (or missing, FHIR's default reading)
    is positive evidence; *refuted* is negative evidence (the fact becomes
    ``false`` unless positive evidence exists too; then ``true`` wins and a
    warning says so); *entered-in-error* is ignored without a word;
    *provisional*, *differential* and *unconfirmed* are ignored with a warning,
    because a suspicion is not a diagnosis.
  - ``clinicalStatus`` for a table entry with ``scope: lifetime`` (past
    history): every status counts - a resolved past diagnosis is still part
    of the history. For ``scope: current`` (present findings): only
    *active*, *recurrence*, *relapse* count; *inactive/remission/resolved*
    are ignored; a missing status is ignored with a warning.
  - ``within_days`` on an entry: the Condition's onset (``onset[x]``, else
    ``recordedDate``; for a refuted one ``recordedDate`` first) must lie
    within that many days before ``now``. Undated or older ones are not used
    (warning). A refuted ``scope: current`` entry needs ``within_days``: an old
    "absent" says nothing about today.
* **Procedure**: *completed*, *in-progress* and *stopped* (it was started)
  are positive evidence, only within the entry's ``within_days``; no Procedure
  status ever yields ``false``.
* **Observation**: status *final*, *amended* or *corrected*; time is
  ``effective[x]`` (a Period's end), else ``issued``, else the time of the
  DiagnosticReport (``result``) or panel Observation (``hasMember``) that lists
  it. The latest usable one in ``[now - observation_window_days, now]`` wins.
  Older ones are *stale*: not used, one warning per mapping entry. A value with
  an unknown unit, a comparator (``<5``), a non-finite or negative result is
  dropped with a warning and never guessed; an older in-window value may then
  be used (the warning says a newer one was dropped).
* **Medication** (MedicationRequest, MedicationStatement): *active* and
  *on-hold* are current. *completed* and *stopped* count only if they ended
  (validity period end / effective end, else authored / asserted date) within
  ``medication_window_days`` before ``now``, and then only when their class is
  not the unmatched class. A current medication no entry classifies is listed
  with the table's unmatched class. Medication flags come from current
  ones only. Everything else (draft, cancelled, entered-in-error, not-taken,
  intended, unknown) is ignored. An empty list is left out: absent = unknown.
* **Time**: every recency decision uses one ``now``. The converter's ``now``
  defaults to the wall-clock time read once when a conversion starts (UTC): the
  safe reading for live use, where an old value must never pass as fresh. For
  reproducible output (tests, audits, replays) pass ``now`` explicitly; it is
  also written to the document's ``recorded_at``. Resources dated after ``now``
  are ignored (the document describes the patient *as of* ``now``) and counted
  in one warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# How old an Observation may be and still count, unless the caller says otherwise. Here,
# with the rest of the recency policy, so the command line can show it without importing
# the converter.
DEFAULT_OBSERVATION_WINDOW_DAYS = 30.0

UCUM_SYSTEM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class ConditionPolicy:
    """Which Condition statuses count how. The default is the documented policy above."""

    positive_verification: frozenset[str] = frozenset({"confirmed"})
    negative_verification: frozenset[str] = frozenset({"refuted"})
    silent_ignore_verification: frozenset[str] = frozenset({"entered-in-error"})
    warn_ignore_verification: frozenset[str] = frozenset({"provisional", "differential", "unconfirmed"})
    missing_verification_is_confirmed: bool = True
    current_clinical: frozenset[str] = frozenset({"active", "recurrence", "relapse"})
    past_clinical: frozenset[str] = frozenset({"inactive", "remission", "resolved"})


DEFAULT_CONDITION_POLICY = ConditionPolicy()

OBSERVATION_USABLE_STATUS = frozenset({"final", "amended", "corrected"})
# Statuses that are worth a warning when a mapped Observation carries them
# (the others - cancelled, entered-in-error - are dropped silently).
OBSERVATION_WARN_STATUS = frozenset({"registered", "preliminary", "unknown"})

PROCEDURE_DONE_STATUS = frozenset({"completed", "in-progress", "stopped"})

MEDICATION_CURRENT_STATUS = frozenset({"active", "on-hold"})
MEDICATION_ENDED_STATUS = frozenset({"completed", "stopped"})
MEDICATION_IGNORED_INTENT = frozenset({"proposal", "option"})


def status_code(concept: Any) -> str | None:
    """First coded value of a status CodeableConcept (system not checked: R4 fixes it)."""
    if not isinstance(concept, Mapping):
        return None
    codings = concept.get("coding")
    for coding in codings if isinstance(codings, list) else []:
        code = coding.get("code") if isinstance(coding, Mapping) else None
        if isinstance(code, str):
            return code.strip()
    return None
