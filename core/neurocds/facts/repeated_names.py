"""Naming the objects of a JSON text that repeat a member name, at C speed.

When orjson has read a whole text and only repeated names are left to report
(:class:`neurocds.facts.fastparse.RepeatedNames`), a Python hook per object
(``object_pairs_hook``) cost 150 ms for 1 MiB of 74,000 such objects. Here the text
is rewritten at C speed so that objects become lists keeping every member as written
(:func:`_objects_as_lists`), read by orjson, the repeating objects found a level at a
time, and only the paths down to the objects a refusal lists are walked in Python: runs
of children holding none are skipped (:func:`neurocds.facts.gallop.first_unclean_indexes`).

The violations, their pointers and their order are exactly those the exact parse's walk
(:func:`neurocds.facts.strictjson.parse_strict` with the per-object hook) gives the same
text: an object's surviving members are ``dict(pairs)`` (first position, last value),
and a value a later duplicate overwrote is not inspected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import compress, repeat
from operator import lt
from typing import Any

import orjson

from neurocds.errors import Violation
from neurocds.facts.fastparse import deeper_than, no_collection
from neurocds.facts.gallop import first_unclean_indexes
from neurocds.facts.plainjson import MAX_VIOLATIONS, escape_pointer_token, first_names_in_pointer_order
from neurocds.facts.pointer_walk import PointerWalk

__all__ = ["duplicate_violations", "repeated_name_problems", "repeated_names"]


def repeated_names(names: Iterable[str]) -> list[str]:
    """The names held more than once, in the order they first appear."""
    # Counted at C speed: a set-and-list scan was quadratic in distinct repeated names.
    counts = Counter(names)
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


# Objects read as lists keeping every member: "{" "}" ":" become "[" "]" ",", inside
# strings too (each keeps its length and quotes; names are taken from the first reading).
_OBJECTS_AS_LISTS = bytes.maketrans(b"{}:", b"[],")


def _same_members(first: list[Any], second: list[Any]) -> bool:
    """True when no object in ``first`` (orjson's reading) lost a member that ``second``
    (the same values read as lists) holds: written out, they are then equally long
    (each dropped member takes at least five bytes, ``"",0``, with it), at C speed."""
    return len(orjson.dumps(first)) == len(orjson.dumps(second))


def _children_losing_members(value: Any, listed: list[Any]) -> Iterator[tuple[str | int, tuple[Any, Any]]] | None:
    """``(pointer token, (child, child read as lists))`` of the children of ``value`` under
    which an object lost a member, in order; None where the names cannot be told apart."""
    if isinstance(value, dict):
        keys, children = list(value), list(value.values())
        if len(listed) == 2 * len(value):
            kept = listed[1::2]
        else:  # this object repeats a name: the value kept is the last one written
            names = _names_written(keys, listed)
            if names is None:
                return None
            kept = [*dict(zip(names, listed[1::2], strict=True)).values()]
        tokens: Any = map(escape_pointer_token, keys)
    else:
        children, kept, tokens = value, listed, range(len(value))
    tokens = list(tokens)
    judged = range(len(children))

    def clean(part: range) -> bool:
        return _same_members(children[part.start : part.stop], kept[part.start : part.stop])

    return ((tokens[i], (children[i], kept[i])) for i in first_unclean_indexes(judged, clean))


def _names_written(keys: list[str], listed: list[Any]) -> list[str] | None:
    """The member names of an object as written (``listed[::2]``, read with "{}:" turned to
    "[],"), given its distinct names ``keys``; None when two of those read alike.

    Both sides are compared translated: an escaped colon (``\\u003a``) was not turned.
    """
    back = dict(zip(map(str.translate, keys, repeat(_STR_AS_LISTED)), keys, strict=True))
    if len(back) != len(keys):
        return None
    return [*map(back.__getitem__, map(str.translate, listed[::2], repeat(_STR_AS_LISTED)))]


_STR_AS_LISTED = str.maketrans("{}:", "[],")


def repeated_name_problems(encoded: bytes, value: Any, max_depth: int) -> list[Violation] | None:
    """The ``duplicate_key`` violations of valid JSON ``encoded`` (read by orjson as
    ``value``), in document order, stopping after :data:`MAX_VIOLATIONS` + 1 (the strict
    parser's walk, for repeats alone).

    None when the text nests deeper than ``max_depth`` (its own scan then says where), or
    when two names of a repeating object read alike as lists ("a:b" and "a,b"): the exact
    parse then decides.
    """
    with no_collection():
        listed = orjson.loads(encoded.translate(_OBJECTS_AS_LISTS))
    if deeper_than(listed, max_depth):  # it holds every container the text holds
        return None
    found: list[Violation] = []
    walk: PointerWalk[tuple[Any, Any]] = PointerWalk((value, listed))
    for pointer, (node, node_listed) in walk:
        if isinstance(node, dict | list):
            if isinstance(node, dict) and len(node_listed) != 2 * len(node):
                names = _names_written(list(node), node_listed)
                if names is None:
                    return None
                found.extend(duplicate_violations(pointer, repeated_names(names)))
            losing = _children_losing_members(node, node_listed)
            if losing is None:
                return None
            walk.descend(pointer, losing)
        if len(found) > MAX_VIOLATIONS:
            break
    return found
