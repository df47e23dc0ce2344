"""Naming the objects of a JSON text that repeat a member name, at C speed.

When orjson has read a whole text and only repeated names are left to report
(:data:`neurocds.facts.fastparse.ONLY_REPEATED_NAMES`), a Python hook per object
(``object_pairs_hook``) cost 150 ms for 1 MiB of 74,000 such objects. Here every
object is kept as the tuple of its members as written (:class:`_Members`, built by
``json.loads`` without a Python call), and only the paths down to the objects a
refusal lists are walked in Python: runs of children holding no repeat are skipped a
level at a time (:func:`neurocds.facts.gallop.first_unclean_indexes`).

The violations, their pointers and their order are exactly those the exact parse's walk
(:func:`neurocds.facts.strictjson.parse_strict` with the per-object hook) gives the same
text: an object's surviving members are ``dict(pairs)`` (first position, last value),
and a value a later duplicate overwrote is not inspected.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from collections.abc import Iterator
from itertools import compress, repeat
from operator import is_, itemgetter, lt, ne
from typing import Any

from neurocds.errors import Violation
from neurocds.facts.fastparse import no_collection
from neurocds.facts.gallop import first_unclean_indexes
from neurocds.facts.plainjson import MAX_VIOLATIONS, escape_pointer_token, first_names_in_pointer_order

__all__ = ["duplicate_violations", "repeated_name_problems", "repeated_names"]


class _Members(tuple[tuple[str, Any], ...]):
    """One parsed object: its ``(name, value)`` pairs as written (a tuple: built in C)."""

    __slots__ = ()


def repeated_names(pairs: Any) -> list[str]:
    """The names ``pairs`` holds more than once, in the order they first appear."""
    # Counted at C speed: a set-and-list scan was quadratic in distinct repeated names.
    counts = Counter(map(itemgetter(0), pairs))
    return [*compress(counts, map(lt, repeat(1), counts.values()))]


def duplicate_violations(pointer: str, repeated: list[str]) -> list[Violation]:
    """One ``duplicate_key`` violation per listable name of ``repeated`` (the object at ``pointer``).

    Only the names that can be listed: the first MAX_VIOLATIONS + 1 in pointer order
    (what sorting all of them would keep), not 50,000 violations to sort.
    """
    return [
        Violation(
            pointer=f"{pointer}/{escape_pointer_token(name)}",
            message="member name appears more than once in this object",
            expected="unique member names",
            found="duplicate member",
            code="duplicate_key",
        )
        for name in first_names_in_pointer_order(repeated, MAX_VIOLATIONS + 1)
    ]


def _holds_no_repeat(level: list[Any]) -> bool:
    """True when no object among ``level`` and everything they hold repeats a name.

    A level at a time, each a few C-speed passes: objects are merged with ``dict`` (a
    shorter dict means a repeat) and only the surviving values are descended into.
    """
    while level:
        types = [*map(type, level)]
        objects = [*compress(level, map(is_, types, repeat(_Members)))]
        if not objects:
            level = gc.get_referents(*level)  # lists give their items; atoms nothing
            continue
        merged = [*map(dict, objects)]
        if any(map(ne, map(len, merged), map(len, objects))):
            return False
        level = gc.get_referents(*compress(level, map(is_, types, repeat(list))), *merged)
    return True


def _children_with_repeats(node: dict[str, Any] | list[Any]) -> Iterator[tuple[str | int, Any]]:
    """``(pointer token, child)`` of the children of ``node`` holding a repeat, in order."""
    if isinstance(node, dict):
        keys, values = list(node), list(node.values())
        for i in first_unclean_indexes(values, _holds_no_repeat):
            yield escape_pointer_token(keys[i]), values[i]
    else:
        for i in first_unclean_indexes(node, _holds_no_repeat):
            yield i, node[i]


def repeated_name_problems(text: str) -> list[Violation]:
    """The ``duplicate_key`` violations of valid JSON ``text``, in document order, stopping
    after :data:`MAX_VIOLATIONS` + 1 (the strict parser's walk, for repeats alone)."""
    with no_collection():
        tree = json.loads(text, object_pairs_hook=_Members)
    found: list[Violation] = []
    frames: list[tuple[Any, str]] = [(iter((("", tree),)), "")]
    while frames and len(found) <= MAX_VIOLATIONS:
        children, parent = frames[-1]
        step = next(children, None)
        if step is None:
            frames.pop()
            continue
        token, node = step
        pointer = f"{parent}/{token}" if frames[1:] else ""
        if type(node) is _Members:
            members = dict(node)
            if len(members) != len(node):
                found.extend(duplicate_violations(pointer, repeated_names(node)))
            frames.append((_children_with_repeats(members), pointer))
        elif type(node) is list:
            frames.append((_children_with_repeats(node), pointer))
    return found
