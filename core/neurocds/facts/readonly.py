"""Deep read-only views and plain copies of JSON values: what never shares a container with a facts document.

A view cannot be written through: mappings are :class:`types.MappingProxyType` over a
new dict, arrays are tuples, scalars are themselves. It is a copy of the containers (one
walk), so nothing done to the original afterwards shows through it, and nothing done
through it (nothing can be) reaches the original. :func:`plain_copy` is the writable
counterpart: dicts and lists again, none of them the original's.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["freeze", "plain_copy"]

# Exact JSON scalars: immutable and no container, so returned as they are. Most members
# of a facts document are these; testing their exact type first spares each the
# abstract-class checks below, which were most of the cost of freezing (about 170k
# instructions of a 1.2M evaluation on the benchmark documents).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def freeze(value: Any) -> Any:
    """A deep read-only view of a JSON value: dicts become mapping proxies, lists tuples."""
    kind = type(value)
    if kind is dict:
        return MappingProxyType({k: v if type(v) in _SCALARS else freeze(v) for k, v in value.items()})
    if kind is list:
        return tuple([v if type(v) in _SCALARS else freeze(v) for v in value])
    if kind in _SCALARS:
        return value
    # Any Mapping or sequence, not only exact dicts and lists: a caller's OrderedDict or
    # defaultdict nested in the facts would otherwise reach pack code writable, and one
    # pack could change what the next pack and the rules see.
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def plain_copy(value: Any) -> Any:
    """A deep copy of a JSON value made of dicts and lists (any Mapping a dict, any tuple a list)."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _SCALARS else plain_copy(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else plain_copy(v) for v in value]
    if kind in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return {k: plain_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_copy(v) for v in value]
    return value
