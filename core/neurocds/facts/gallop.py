"""Finding the few items of a long list that fail a check, by asking about whole slices.

A walk that names problems must visit the children holding one, but a Python step per
child (350,000 clean objects before one NaN) is what would make refusing slow. Checks
that judge a whole slice at C speed (a level at a time) let runs of clean children be
skipped: slices double while they stay clean, then the first unclean one is halved down
to its first unclean item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["first_unclean_indexes"]

# Lists with fewer items are looked at item by item: galloping costs more there.
_GALLOP_FROM = 32


def first_unclean_indexes(values: Sequence[Any], is_clean: Callable[[Any], bool]) -> Iterator[int]:
    """Indexes (in order) of the items of ``values`` that ``is_clean`` does not pass alone.

    ``is_clean`` judges a slice and must pass it exactly when it passes each of its
    items. Lazily: a walk that stops early never judges the rest.
    """
    count = len(values)
    if count < _GALLOP_FROM:
        yield from range(count)
        return
    start = 0
    while start < count:
        low, width = start, 1
        high = min(count, low + width)
        while is_clean(values[low:high]):
            if high == count:
                return
            low, width = high, width * 2
            high = min(count, low + width)
        while high - low > 1:  # the first unclean item lies in [low, high)
            middle = (low + high) // 2
            if is_clean(values[low:middle]):
                low = middle
            else:
                high = middle
        yield low
        start = low + 1
