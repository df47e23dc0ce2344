"""The strict parser's fast path: orjson, trusted only where it provably equals ``json.loads``.

:func:`neurocds.facts.strictjson.parse_strict` must refuse duplicate member names,
NaN/Infinity, lone surrogates and numbers beyond float range, naming each by its
JSON pointer. Finding them needs a Python call per object (``object_pairs_hook``),
which dominates the cost of refusing a cheap hostile document (125,000 small objects
in 1 MiB). This module answers the common case at C speed instead:

* ``orjson.loads`` itself refuses NaN, Infinity, lone surrogates and numbers that
  overflow a double, and decodes every other number to the same value as
  ``json.loads`` (floats are correctly rounded by both; checked on 400,000 random
  literals), except integers beyond 64 bits, which it turns into floats: a run of 19
  digits outside strings sends the document to the exact path.
* Duplicate member names are detected by counting: every member of the text has one
  ``:`` outside strings; the parsed value keeps one member per distinct name. So the
  colons of the text (``\\u003a`` escapes counted, escaped backslashes removed first)
  equal the colons of the value written back (``orjson.dumps`` never escapes ``:``)
  exactly when no object repeated a name: strings are the same on both sides, and
  each dropped member takes at least its own colon with it.

Anything the fast path cannot vouch for goes to the exact (slower) path, which finds
and names every problem as before; so the fast path changes speed, never an answer.
"""

from __future__ import annotations

import gc
import json
from itertools import accumulate, repeat
from operator import lt, sub
from typing import Any

import orjson

__all__ = [
    "RepeatedNames",
    "bracket_depth_at_most",
    "deeper_than",
    "exceeds",
    "fast_parse",
    "member_count",
    "no_collection",
    "outside_brackets",
    "outside_strings",
    "repeats_a_name",
    "value_count",
]

# Every digit mapped to 0, so that "19 digits in a row" is one C-speed substring search.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
# orjson keeps integers up to 64 bits exact (at most 20 digits, and any 19-digit one
# below 2**63); longer runs may be integers it turned into floats.
_LONG_DIGIT_RUN = b"0" * 19
# Long runs placed one by one (inside or outside a string) before a document goes to the exact path.
_RUNS_PLACED = 8
_ESCAPED_COLON = (b"\\u003a", b"\\u003A")
# Everything but brackets and quotes deleted, then every bracket made a "[" or "]".
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_NOT_COLON = bytes(b for b in range(256) if b not in b':"')
_ONE_BRACKET_KIND = bytes.maketrans(b"{}", b"[]")
# For counting values: JSON whitespace deleted, every byte but brackets, commas and quotes
# made a "0" (so that a container holding only an atom or a string is seen not to be empty).
_JSON_WHITESPACE = b" \t\n\r"
_ATOMS_TO_ZERO = bytes.maketrans(
    bytes(b for b in range(256) if b not in b'[]{},"'), b"0" * (256 - len(b'[]{},"'))
)


class RepeatedNames:
    """fast_parse's answer where orjson read the whole text and only repeated names are
    left to name: ``value`` is what orjson read (each repeated name kept once)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

_CONTAINER_TYPES = frozenset({dict, list})
# "[" -> 2 and "]" -> 0, so that byte - 1 is the change in depth.
_DEPTH_STEPS = bytes.maketrans(b"[]", b"\x02\x00")


def _decoded_colons(encoded: bytes) -> int:
    """Colons the UTF-8 text holds once decoded: raw ones plus ``\\u003a`` escapes."""
    colons = encoded.count(b":")
    if b"\\u003" in encoded:
        # An escaped backslash followed by "u003a" is text, not an escape: drop the
        # escaped backslashes (pairs, left to right, as JSON reads them) before counting.
        plain = encoded.replace(b"\\\\", b"")
        colons += sum(plain.count(escape) for escape in _ESCAPED_COLON)
    return colons


class no_collection:  # lower case: used like the function it was, ``with no_collection():``
    """Pause the cyclic garbage collector while a parse builds its value.

    A parsed JSON value is a tree, so a collection during parsing can free nothing, yet
    every 700 new containers it rescans the young ones and now and then all of them:
    520,000 nested lists (1 MiB of arrays 61 deep) took 107 ms to parse with it and 28 ms
    without. The collector is switched back on afterwards unless it was off already (a
    parse running in another thread at the same time may see it paused: a delay, never a
    leak, since every parse re-enables what it found enabled). A class rather than a
    ``contextlib.contextmanager``: every parse enters it, and the generator machinery cost
    about 11,000 instructions a time, more than the rest of the fast path's checks.
    """

    __slots__ = ("_enabled",)

    def __enter__(self) -> None:
        self._enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
            gc.enable()


def repeats_a_name(encoded: bytes, value: Any) -> bool:
    """True when some object of ``encoded`` (UTF-8 text parsed into ``value``) repeats a member name.

    ``value`` may hold what orjson cannot write (integers beyond 64 bits, lone
    surrogates, the strict parser's placeholders): the standard library writes it then.
    """
    try:
        colons = orjson.dumps(value).count(b":")
    except orjson.JSONEncodeError:
        colons = json.dumps(value, ensure_ascii=False).count(":")
    return _decoded_colons(encoded) != colons


def _long_run_outside_strings(encoded: bytes, zeroed: bytes) -> bool:
    """True when a run of 19 or more digits lies outside the strings of a valid JSON document.

    A long run inside a string (Synthea's narratives print a 19-digit "Person seed") is
    text, not an integer orjson could have turned into a float. Each run is placed by the
    quotes before it (escaped backslashes and quotes removed first, left to right, as JSON
    reads them: an odd count means inside a string), at C speed. Documents with many runs
    are left to the exact path rather than counted run by run.
    """
    start = zeroed.find(_LONG_DIGIT_RUN)
    for _ in range(_RUNS_PLACED):
        if start < 0:
            return False
        if _without_escapes(encoded[:start]).count(b'"') % 2 == 0:
            return True
        start = zeroed.find(_LONG_DIGIT_RUN, zeroed.find(b'"', start))  # past the end of this run's string
    return start >= 0


def fast_parse(text: str, encoded: bytes, max_depth: int) -> tuple[bool, Any]:
    """``(True, value)`` when orjson parsed ``text`` to exactly what the strict path would accept.

    ``(False, None)`` when the exact path must decide: orjson refused the text (a
    syntax error, NaN, a lone surrogate, a non-finite number), an integer may exceed
    64 bits, or the value nests deeper than ``max_depth`` (the text's own scan then says
    where). ``(False, RepeatedNames(value))`` when everything else was read and some
    object repeats a member name: naming those is all that is left. ``encoded`` is
    ``text`` as UTF-8.
    """
    try:
        with no_collection():
            value = orjson.loads(encoded)
    except orjson.JSONDecodeError:
        return False, None
    zeroed = encoded.translate(_DIGITS_TO_ZERO)
    if _LONG_DIGIT_RUN in zeroed and _long_run_outside_strings(encoded, zeroed):
        return False, None
    if deeper_than(value, max_depth):
        return False, None
    try:
        written = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nesting beyond orjson's writer (only with a raised max_depth)
        return False, None
    if _decoded_colons(encoded) != written.count(b":"):
        return False, RepeatedNames(value)
    return True, value


def deeper_than(value: Any, max_depth: int) -> bool:
    """True when parsed JSON ``value`` holds a container nested deeper than ``max_depth``.

    A level at a time: ``gc.get_referents`` lists the items of every list and the values
    of every dict of a level in one C call (atoms have none), so a 45 KiB body costs a
    few C passes, where scanning its text for brackets outside strings cost 1.8 M
    instructions. Where no object repeats a name, the value's depth is the text's.
    """
    level = [value]
    for _ in range(max_depth):
        level = gc.get_referents(*level)
        if not level:
            return False
    return not _CONTAINER_TYPES.isdisjoint(map(type, level))


def outside_brackets(encoded: bytes) -> bytes:
    """The brackets of ``encoded`` that lie outside strings, in order, each one ``[`` or ``]``."""
    return outside_strings(encoded, _NOT_STRUCTURE).translate(_ONE_BRACKET_KIND)


def member_count(encoded: bytes) -> int:
    """The members of ``encoded``: its colons outside strings (each member has one)."""
    return outside_strings(encoded, _NOT_COLON).count(b":")


def value_count(encoded: bytes) -> int:
    """The values of ``encoded`` held by arrays and objects (items and members): the commas
    outside strings plus the containers that are not empty, counted at C speed.

    Each string becomes one ``0`` (it is a value, and its commas and brackets are text),
    every other byte but brackets and commas a ``0``, whitespace nothing: a container is
    empty exactly when its opening bracket is then followed by its closing one.
    """
    marked = _without_escapes(encoded).translate(_ATOMS_TO_ZERO, _JSON_WHITESPACE)
    if b'"' in marked:
        marked = b"0".join(marked.split(b'"')[::2])
    brackets = marked.translate(_ONE_BRACKET_KIND)
    return brackets.count(b",") + brackets.count(b"[") - brackets.count(b"[]")


def _without_escapes(encoded: bytes) -> bytes:
    """``encoded`` with escaped backslashes and quotes removed (left to right, as JSON reads
    them), so that every remaining quote opens or closes a string."""
    return encoded.replace(b"\\\\", b"").replace(b'\\"', b"")


def outside_strings(encoded: bytes, deleted: bytes) -> bytes:
    """What lies outside the strings of ``encoded`` once the bytes ``deleted`` are deleted.

    All at C speed: escaped backslashes and quotes removed, the ``deleted`` bytes (never
    a quote) deleted, then adjacent quotes dropped (an empty string, or the end of one
    string and the start of the next with nothing kept between: neither changes what
    lies outside). Only strings holding a kept byte are left to split off.
    """
    structure = _without_escapes(encoded).translate(None, deleted)
    while b'""' in structure:
        structure = structure.replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])
    return structure


def exceeds(brackets: bytes, max_depth: int) -> bool:
    """True when the running depth of ``brackets`` (``[`` +1, ``]`` -1) ever passes ``max_depth``.

    ``any`` stops at the first level too deep, so a deep document is refused after
    reading its first ``max_depth + 1`` brackets, not all of them.
    """
    depths = accumulate(map(sub, brackets.translate(_DEPTH_STEPS), repeat(1)))
    return any(map(lt, repeat(max_depth), depths))


def bracket_depth_at_most(encoded: bytes, max_depth: int) -> bool:
    """True when no bracket outside strings is nested deeper than ``max_depth`` (False: unsure).

    Complete innermost pairs ``[]`` are removed pass after pass at C speed: after k
    passes every container of height k is gone, and the deepest level is at most k plus
    the remainder's own depth (counted once passes stop paying). False means unsure (too
    deep or unbalanced): the caller's exact scan decides and says where.
    """
    brackets = outside_brackets(encoded)
    passes = 0
    while brackets and passes < max_depth:
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return False  # unbalanced: only the exact scan can say where
        passes += 1
        # A pass that removes little (long chains) costs as much as counting: count the rest.
        slow = len(shorter) * 4 > len(brackets) * 3
        brackets = shorter
        if slow:
            break
    # Each pass lowered the deepest level by at most one, so this bounds the original depth.
    return not brackets or not exceeds(brackets, max_depth - passes)
