"""FHIR date / dateTime / instant parsing into timezone-aware UTC datetimes.

FHIR allows partial dates (``2019``, ``2019-05``) and dateTimes without seconds.
A partial value is read as its earliest instant and a value without an offset
as UTC; both are deterministic, and recency checks compare instants only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any


def parse_fhir_datetime(value: Any) -> datetime | None:
    """Parse a FHIR date, dateTime or instant; ``None`` when it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    try:
        if len(text) == 4 and text.isdigit():
            return datetime(int(text), 1, 1, tzinfo=UTC)
        if len(text) == 7 and text[4] == "-":
            return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_fhir_date(value: Any) -> tuple[date, bool] | None:
    """Parse a FHIR ``date``; returns (date, is_partial) or ``None``."""
    parsed = parse_fhir_datetime(value)
    if parsed is None:
        return None
    text = value.strip()
    return parsed.date(), len(text) < 10


def format_rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix (seconds precision keeps output stable)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def period_time(period: Any, *, prefer_end: bool) -> datetime | None:
    """A Period's end (or start) instant, falling back to the other bound."""
    if not isinstance(period, Mapping):
        return None
    first, second = ("end", "start") if prefer_end else ("start", "end")
    return parse_fhir_datetime(period.get(first)) or parse_fhir_datetime(period.get(second))


def choice_time(resource: Mapping[str, Any], stem: str, *, prefer_end: bool) -> datetime | None:
    """Time of a ``<stem>[x]`` choice element (DateTime, Instant, Period)."""
    for suffix in ("DateTime", "Instant"):
        moment = parse_fhir_datetime(resource.get(stem + suffix))
        if moment is not None:
            return moment
    return period_time(resource.get(stem + "Period"), prefer_end=prefer_end)


def whole_years_between(born: date, at: date) -> int:
    """Completed years from ``born`` to ``at`` (a birthday counts on its day)."""
    years = at.year - born.year
    if (at.month, at.day) < (born.month, born.day):
        years -= 1
    return years


def latest_time(resources: list[Mapping[str, Any]]) -> datetime | None:
    """The latest clinical time found in ``resources`` (for ``--now latest``)."""
    best: datetime | None = None
    for res in resources:
        for moment in (
            choice_time(res, "effective", prefer_end=True),
            parse_fhir_datetime(res.get("issued")),
            choice_time(res, "onset", prefer_end=False),
            parse_fhir_datetime(res.get("recordedDate")),
            choice_time(res, "performed", prefer_end=True),
            parse_fhir_datetime(res.get("authoredOn")),
        ):
            if moment is not None and (best is None or moment > best):
                best = moment
    return best


def parse_instant(text: str) -> datetime:
    """An RFC 3339 date-time with a time-zone offset, in UTC (a ``now`` option); ``ValueError`` says why not."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} needs a time-zone offset (e.g. 'Z')")
    return moment.astimezone(UTC)


def just_after_latest(resources: list[Mapping[str, Any]]) -> datetime | None:
    """``now = latest``: one second past the latest record, so that record itself counts as "before now"."""
    moment = latest_time(resources)
    return None if moment is None else moment + timedelta(seconds=1)
