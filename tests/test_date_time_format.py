"""The RFC 3339 ``date-time`` check against its definition, written the obvious way.

:func:`neurocds.facts.fastschema.is_rfc3339_date_time` is the one format function both
jsonschema and jsonschema-rs call, so their agreement tests cannot catch a mistake in it.
It checks each field's range in its pattern (no ``int()`` per field, for speed); here
every field is converted and compared as numbers, on generated near-misses of every field.
"""

from __future__ import annotations

import re

from hypothesis import given, seed, settings
from hypothesis import strategies as st

from neurocds.facts.fastschema import is_rfc3339_date_time

SHAPE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def definition(value: str) -> bool:
    match = SHAPE.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = 29 if month == 2 and leap else DAYS_IN_MONTH[month - 1]
    if not 1 <= day <= days or hour > 23 or minute > 59 or second > 60:
        return False
    offset = 0
    if match.group(7):
        off_hour, off_minute = int(match.group(8)), int(match.group(9))
        if off_hour > 23 or off_minute > 59:
            return False
        offset = (off_hour * 60 + off_minute) * (1 if match.group(7) == "+" else -1)
    if second == 60:
        return (hour * 60 + minute - offset) % 1440 == 23 * 60 + 59
    return True


def two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


# Every field just inside and just outside its range, leap years and centuries, leap seconds.
YEARS = st.sampled_from([0, 1, 4, 100, 400, 1900, 2000, 2016, 2023, 2024, 2100, 9999]).map(lambda n: f"{n:04d}")
OFFSETS = st.one_of(
    st.sampled_from(["Z", "z"]), st.builds(lambda s, h, m: f"{s}{h}:{m}", st.sampled_from("+-"), two(0, 25), two(0, 61))
)
DATE_TIMES = st.builds(
    lambda y, mo, d, t, h, mi, s, frac, off: f"{y}-{mo}-{d}{t}{h}:{mi}:{s}{frac}{off}",
    YEARS,
    two(0, 13),
    two(0, 32),
    st.sampled_from("Tt "),
    two(0, 24),
    two(0, 60),
    st.one_of(two(0, 61), st.just("60")),
    st.sampled_from(["", ".5", ".123456789", "."]),
    OFFSETS,
)


@seed(41)
@settings(max_examples=4000, deadline=None)
@given(st.one_of(DATE_TIMES, st.text(max_size=30)))
def test_the_date_time_check_equals_its_definition(value: str) -> None:
    assert is_rfc3339_date_time(value) is definition(value)


def test_every_month_end_and_leap_second_equals_its_definition() -> None:
    for year in ("1900", "2000", "2023", "2024"):
        for month in range(1, 13):
            for day in range(27, 33):
                value = f"{year}-{month:02d}-{day:02d}T23:59:60Z"
                assert is_rfc3339_date_time(value) is definition(value), value
    assert is_rfc3339_date_time("2016-12-31T23:59:60Z") and not is_rfc3339_date_time("2016-12-31T22:59:60Z")
    assert is_rfc3339_date_time("2017-01-01T00:59:60+01:00") and not is_rfc3339_date_time("2017-01-01T00:59:60-01:00")
    assert is_rfc3339_date_time(42) and not is_rfc3339_date_time("2024-02-30T00:00:00Z")
