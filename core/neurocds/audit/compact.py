"""The compact form of a decision's explanation: what varies per decision, and references to what does not.

A result document's explanation (findings, derived facts, missing data and the why/why-not trace;
and the pack versions that made it, which are the same few in every decision;
see schemas/trace.schema.json and schemas/result.schema.json) is mostly the same
text decision after decision: a rule's name, pack and conclusion, a finding's title,
recommendations and evidence, a condition's pointer and test. Only the node states
vary: which value a fact had, whether it was recorded, whether a rule was false or
undecided, how many of its conditions held. (Two-valued states, such as a rule
being false or undecided and a fact being recorded or not, are kept with the static
part: that at most doubles the catalog and saves a member per node.) So each node of the documented shapes
is split in two: its *static* members go once into the log directory's catalog
(:mod:`neurocds.audit.catalog`, referenced by number), and the record keeps the
number and the node's *dynamic* members, in the order the catalog entry lists them.

The split follows the documented shapes only (which members of a finding, a derived
fact, a fired or not-fired rule and a "because" item vary), never how the engine
builds them: a member the schemas do not name stays static, so nothing is lost, and
a node that is not of the documented shape leaves the explanation stored whole.
``explanation.sha256`` is SHA-256 of the canonical JSON of those members as the
engine gave them, and :func:`expand` rebuilds exactly that (tested on every example).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import orjson

from neurocds.audit._canon import canonical_json, sha256_canonical, sha256_hex
from neurocds.audit.errors import AuditError

FORM = "catalog-2"
# Forms this version reads: catalog-2 adds whole trace nodes stored as one catalog number.
READABLE_FORMS = ("catalog-1", FORM)
# The members of a decision body the explanation holds.
EXPLAINED = ("findings", "derived", "missing_data", "trace", "packs")

# Members that vary from one decision to the next, per node kind (from the schemas);
# a member named here whose value is a list of "because" nodes is itself split.
_DYNAMIC: dict[str, tuple[str, ...]] = {
    "finding": ("because", "unknown"),
    "derived": ("value", "because"),
    "fired": ("because",),
    "not_fired": ("false_conditions", "unknown_facts", "conditions_met"),
    "because": ("value",),
    "missing": (),
}
_LISTS_OF_BECAUSE = ("because", "false_conditions")
_KIND = {"findings": "finding", "derived": "derived", "missing_data": "missing"}

Intern = Callable[[dict[str, Any]], int]
_MEMO_MAX = 200_000  # packed nodes remembered (a few hundred bytes each)
Lookup = Callable[[int], dict[str, Any]]
# orjson bytes of each node in a decision body's lists (see node_keys), by member ("trace.fired").
NodeKeys = dict[str, list[bytes]]


class NotCompactable(Exception):
    """A node is not of the documented shape: the explanation is stored whole."""


def compact(
    body: Mapping[str, Any],
    intern: Intern,
    catalog_position: Callable[[], list[Any]],
    memo: dict[str, dict[bytes, tuple[Any, bytes]]] | None = None,
    keys: NodeKeys | None = None,
) -> dict[str, Any]:
    """``body`` with its explanation members replaced by ``explanation`` (the compact form).

    :param intern: returns the catalog number of a static entry (adding it if new).
    :param catalog_position: ``[entries, chain hash]`` of the catalog once every entry
        this body needs is in it (called after compaction).
    :param memo: packed nodes by their JSON bytes, kept with the catalog whose numbers
        they hold: most nodes recur whole (the same rule false for the same value), and a
        lookup is far cheaper than packing them again.
    :param keys: :func:`node_keys` of ``body``, computed before the writer's lock was taken.
    :returns: ``body`` unchanged when its explanation is not of the documented shape.
    """
    if memo is not None:
        intern = _Memo(intern, memo)
    present = [k for k in EXPLAINED if k in body]
    if not present:
        return dict(body)
    # With a memo, each node's canonical bytes are remembered with its packed form; spliced
    # together they are the canonical form of the whole explanation, which is then hashed
    # without encoding it a second time (see _object_bytes).
    parts: dict[str, bytes] | None = {} if isinstance(intern, _Memo) else None
    try:
        packed: dict[str, Any] = {}
        for key in present:
            value = body[key]
            if key == "trace":
                packed[key] = _pack_trace(value, intern, parts, keys)
            elif key == "packs":  # the same few pack versions in every decision: one entry
                if not isinstance(value, list):
                    raise NotCompactable
                packed[key] = intern({"packs": value})
                if parts is not None:
                    parts[key] = canonical_json(value)
            else:
                packed[key] = _pack_list(_KIND[key], value, intern, parts, key, keys)
    except NotCompactable:
        return dict(body)
    out = {k: v for k, v in body.items() if k not in EXPLAINED}
    digest = sha256_hex(_object_bytes(parts)) if parts is not None else None
    if digest is None:
        digest = sha256_canonical({k: body[k] for k in present})
    out["explanation"] = {
        "form": FORM,
        "catalog": catalog_position(),
        "sha256": digest,
        **packed,
    }
    return out


def _object_bytes(members: Mapping[str, bytes]) -> bytes:
    """The canonical JSON object whose members' values are these canonical bytes: the
    definition (``json.dumps`` with sorted keys and ``(",", ":")``) writes an object as its
    sorted members' encodings joined, and a list as its items' encodings joined."""
    return b"{" + b",".join(canonical_json(k) + b":" + members[k] for k in sorted(members)) + b"}"


def node_keys(body: Mapping[str, Any]) -> NodeKeys | None:
    """The memo keys of a decision body's nodes, for :func:`compact`.

    Encoding them is most of compaction's work that needs no catalog, so the writer does it
    in the caller's thread before the lock: under group commit it overlaps another batch's
    fsync instead of lengthening the batch. ``None``: a node orjson cannot write (compact
    then encodes as it always did).
    """
    keys: NodeKeys = {}
    try:
        for member in ("findings", "derived", "missing_data"):
            value = body.get(member)
            if isinstance(value, list):
                keys[member] = list(map(orjson.dumps, value))
        trace = body.get("trace")
        if isinstance(trace, Mapping):
            for member in ("fired", "not_fired"):
                value = trace.get(member)
                if isinstance(value, list):
                    keys["trace." + member] = list(map(orjson.dumps, value))
    except (TypeError, orjson.JSONEncodeError):
        return None
    return keys


def expand(body: Mapping[str, Any], lookup: Lookup) -> dict[str, Any]:
    """The body with its explanation members rebuilt (a body stored whole is returned as is).

    :raises AuditError: the catalog lacks an entry, or the rebuilt explanation does not
        match the hash the record carries.
    """
    explanation = body.get("explanation")
    if not isinstance(explanation, Mapping):
        return dict(body)
    if explanation.get("form") not in READABLE_FORMS:
        raise AuditError(f"explanation form {explanation.get('form')!r} is not one this version reads")
    out = {k: v for k, v in body.items() if k != "explanation"}
    try:
        for key in EXPLAINED:
            if key not in explanation:
                continue
            if key == "trace":
                out[key] = _unpack_trace(explanation[key], lookup)
            elif key == "packs":
                out[key] = list(lookup(explanation[key])["packs"])
            else:
                out[key] = [_unpack(node, lookup) for node in explanation[key]]
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"the explanation cannot be rebuilt from the catalog: {exc}") from exc
    whole = {k: out[k] for k in EXPLAINED if k in out}
    if sha256_canonical(whole) != explanation.get("sha256"):
        raise AuditError("the explanation rebuilt from the catalog does not match the hash its record carries")
    return out


def _pack_trace(
    trace: Any, intern: Intern, parts: dict[str, bytes] | None = None, keys: NodeKeys | None = None
) -> dict[str, Any]:
    if not isinstance(trace, Mapping):
        raise NotCompactable
    out = dict(trace)
    members: dict[str, bytes] | None = {} if parts is not None else None
    for key in ("fired", "not_fired"):
        if key in trace:
            out[key] = _pack_list(key, trace[key], intern, members, key, keys, "trace." + key)
    if parts is not None and members is not None:
        if all(type(k) is str for k in trace):
            for key, value in trace.items():
                if key not in members:
                    members[key] = canonical_json(value)
            parts["trace"] = _object_bytes(members)
        else:  # non-string keys are written as strings and may then sort otherwise: encode it whole
            parts["trace"] = canonical_json(trace)
    return out


def _unpack_trace(trace: Mapping[str, Any], lookup: Lookup) -> dict[str, Any]:
    out = dict(trace)
    for key in ("fired", "not_fired"):
        if key in trace:
            out[key] = [_unpack(lookup(node)["node"] if type(node) is int else node, lookup) for node in trace[key]]
    return out


def _categorical(kind: str, node: Mapping[str, Any]) -> bool:
    """Whether a fired or not-fired rule's varying part takes few values: no number but the
    count of conditions that held. Such a node recurs whole from decision to decision (the same
    rule false because a side was "left"), so it is stored whole in the catalog, once, and the
    record keeps its number. Numbers (ages, lab values) would make one entry per decision."""
    for key in _DYNAMIC[kind]:
        value = node.get(key)
        if key == "conditions_met" or value is None:
            continue
        if _has_number(value):
            return False
    return True


def _has_number(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    if isinstance(value, Mapping):
        return any(_has_number(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_number(v) for v in value)
    return False


class _Memo:
    """An ``intern`` that also remembers whole packed top-level nodes (see :func:`compact`)."""

    def __init__(self, intern: Intern, memo: dict[str, dict[bytes, tuple[Any, bytes]]]) -> None:
        self.intern, self.memo = intern, memo

    def __call__(self, entry: dict[str, Any]) -> int:
        return self.intern(entry)


def _pack_list(
    kind: str,
    items: Any,
    intern: Intern,
    parts: dict[str, bytes] | None = None,
    member: str = "",
    keys: NodeKeys | None = None,
    keys_name: str = "",
) -> list[Any]:
    """The packed nodes; with a memo, also ``parts[member]``: the canonical bytes of ``items``.

    ``keys[keys_name or member]``, when given, are the nodes' memo keys, encoded in advance.
    """
    if not isinstance(items, list):
        raise NotCompactable
    if not isinstance(intern, _Memo):
        return [_pack(kind, item, intern) for item in items]
    kind_memo = intern.memo.setdefault(kind, {})
    try:
        # The memo key is orjson's plain bytes: one C call a node, and equal bytes are an equal
        # node, but for NaN and infinity, which orjson writes as null (see below).
        given = keys.get(keys_name or member) if keys is not None else None
        node_bytes = given if given is not None and len(given) == len(items) else list(map(orjson.dumps, items))
    except (TypeError, orjson.JSONEncodeError):  # a value orjson cannot write: no memo for this list
        if parts is not None:
            parts[member] = canonical_json(items)
        return [_pack(kind, item, intern) for item in items]
    found = list(map(kind_memo.get, node_bytes))
    if None in found:  # new nodes: pack and remember them (rare once the memo has seen a pack's rules)
        found = [
            hit if hit is not None else _remember(kind, item, intern, kind_memo, key)
            for hit, item, key in zip(found, items, node_bytes, strict=True)
        ]
    hits = cast(list[tuple[Any, bytes]], found)  # no None is left
    if parts is not None:
        spliced = b"[" + b",".join([hit[1] for hit in hits]) + b"]"
        # A remembered node never held NaN (its canonical bytes refuse it), but a node holding
        # NaN now has the key of one that held null: where null appears, encode the list afresh,
        # which refuses NaN with an AuditError as hashing the whole explanation did.
        parts[member] = canonical_json(items) if b"null" in spliced else spliced
    return [hit[0] for hit in hits]


def _remember(
    kind: str, item: Any, intern: _Memo, kind_memo: dict[bytes, tuple[Any, bytes]], key: bytes
) -> tuple[Any, bytes]:
    """Pack ``item`` and remember it, with its canonical bytes, under ``key``."""
    if len(kind_memo) >= _MEMO_MAX:
        kind_memo.clear()
    packed: Any = _pack(kind, item, intern)
    if kind in ("fired", "not_fired") and _categorical(kind, item):
        packed = intern({"node": packed})  # an int: see _categorical
    hit = kind_memo[key] = (packed, canonical_json(item))
    return hit


def _pack(kind: str, node: Any, intern: Intern) -> list[Any]:
    """``[catalog number, dynamic member values...]``; the entry names the members and how
    each is stored: as is (``raw``), as a list of packed "because" nodes (``because``), or
    as the number of a catalog entry holding a list of strings (``strings``: the pointers
    of unknown facts, say, which recur from one decision to the next)."""
    if not isinstance(node, Mapping):
        raise NotCompactable
    dynamic = [k for k in _DYNAMIC[kind] if k in node]
    values: list[Any] = []
    shape: list[list[str]] = []
    for key in dynamic:
        value = node[key]
        if key in _LISTS_OF_BECAUSE and isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            values.append([_pack("because", v, intern) for v in value])
            shape.append([key, "because"])
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            values.append(intern({"strings": value}))
            shape.append([key, "strings"])
        else:
            values.append(value)
            shape.append([key, "raw"])
    static = {k: v for k, v in node.items() if k not in dynamic}
    return [intern({"static": static, "dynamic": shape}), *values]


def _unpack(node: list[Any], lookup: Lookup) -> dict[str, Any]:
    entry = lookup(node[0])
    out = dict(entry["static"])
    for (key, mode), value in zip(entry["dynamic"], node[1:], strict=True):
        if mode == "because":
            out[key] = [_unpack(v, lookup) for v in value]
        elif mode == "strings":
            out[key] = list(lookup(value)["strings"])
        else:
            out[key] = value
    return out
