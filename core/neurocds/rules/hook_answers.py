"""What pack code may answer: the checks run on the budgeted worker with the call itself.

A hook's answer is checked before the engine uses it (text is plain, valid Unicode and
short; records are :class:`RulePack`; computed facts stay in the pack's namespaces and
are finite JSON scalars of the kind rules use them as). The checks read attributes of
what pack code returned, which can run pack-defined code, so :func:`checked_call` runs
them inside the call's budget (``HookRunner.call``) and :func:`unwrap` turns a refusal
into :class:`~neurocds.rules.hooks.HookFailure` on the caller's side.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from neurocds.hookspecs import ComputedFacts, RulePack
from neurocds.rules.hooks import HookFailure

MAX_DETAIL_CHARS = 2000
MAX_COMPUTED_VALUES = 256
MAX_NAME_CHARS = 200
MAX_STRING_VALUE_CHARS = 1000
MAX_BECAUSE_POINTERS = 64
MAX_EXACT_INT = 2**53


def checked_call(produce: Callable[[], Any], check: Callable[[Any], Any]) -> tuple[bool, Any]:
    """Run on a worker (through :meth:`HookRunner.call`): pack code, then the check of its answer.

    The check reaches pack-defined code too (properties of a returned record, ``__iter__``,
    ``__fspath__``), so it must run inside the same budget as the call. A refused answer
    comes back as ``(False, reason)`` (see :func:`unwrap`), so that its words are not
    dressed as an exception the pack raised.
    """
    out = produce()
    try:
        return True, check(out)
    except HookFailure as exc:
        return False, str(exc)


def unwrap(answer: tuple[bool, Any]) -> Any:
    """The checked value of :func:`checked_call`, or :class:`HookFailure` with the refusal."""
    ok, value = answer
    if not ok:
        raise HookFailure(value)
    return value


def check_text(text: Any, what: str, limit: int) -> str:
    """A string of valid Unicode (no lone surrogates, no NUL) of at most ``limit`` characters."""
    # Exactly str: a subclass could override startswith/__eq__ and pass a namespace check
    # (another pack's facts) or compare unlike what it prints.
    if not isinstance(text, str):
        raise HookFailure(f"{what} must be a string, got {type(text).__name__}")
    if type(text) is not str:
        raise HookFailure(f"{what} must be a plain string, not the str subclass {type(text).__name__}")
    if len(text) > limit:
        raise HookFailure(f"{what} is {len(text)} characters long (at most {limit})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise HookFailure(f"{what} is not valid Unicode (it holds a lone surrogate)") from None
    if "\x00" in text:
        raise HookFailure(f"{what} holds a NUL character")
    return text


def check_detail(out: Any) -> str | None:
    """What ``neurocds_finding_detail`` may return: ``None`` or a short text."""
    return None if out is None else check_text(out, "neurocds_finding_detail's return value", MAX_DETAIL_CHARS)


def check_records(out: Any) -> list[RulePack]:
    """What ``neurocds_register_packs`` may return: a list (or tuple) of RulePack records."""
    if out is None:
        return []
    if not isinstance(out, list | tuple):
        raise HookFailure(f"neurocds_register_packs must return a list of RulePack records, got {type(out).__name__}")
    records: list[RulePack] = []
    for record in out:
        # Exactly RulePack, as text is exactly str: a subclass's properties could answer the
        # check here and something else (another pack's name) when read later, unbudgeted.
        if type(record) is not RulePack:
            raise HookFailure(f"neurocds_register_packs must return RulePack records, got {type(record).__name__}")
        check_text(record.name, "RulePack.name", MAX_NAME_CHARS)
        check_text(record.version, "RulePack.version", MAX_NAME_CHARS)
        if isinstance(record.depends_on, str) or not isinstance(record.depends_on, Sequence):
            raise HookFailure(f"RulePack.depends_on of {record.name!r} must be a list of pack names")
        # Iterated once: a second pass over the pack's sequence could yield what was never checked.
        depends_on = tuple(record.depends_on)
        for dep in depends_on:
            check_text(dep, "RulePack.depends_on entry", MAX_NAME_CHARS)
        files: Any = record.rule_files  # typed Sequence[Path], but pack code may return anything
        if isinstance(files, str | bytes) or not isinstance(files, Sequence):
            raise HookFailure(f"RulePack.rule_files of {record.name!r} must be a list of paths")
        if record.facts_schema is not None and not isinstance(record.facts_schema, Mapping):
            raise HookFailure(f"RulePack.facts_schema of {record.name!r} must be a mapping or None")
        detailed = _detailed_findings(record)
        # Plain copies, made here on the budgeted worker: what the engine reads later is data,
        # not pack objects whose iteration or lookups could run (and change) at each read.
        records.append(
            dataclasses.replace(
                record,
                depends_on=depends_on,
                rule_files=tuple(files),
                facts_schema=_plain_schema(record.name, record.facts_schema),
                detailed_findings=detailed,
            )
        )
    return records


def _detailed_findings(record: RulePack) -> tuple[str, ...] | None:
    """``RulePack.detailed_findings`` as a plain tuple of finding ids (``None``: not declared)."""
    declared: Any = record.detailed_findings  # typed, but pack code may return anything
    if declared is None:
        return None
    if isinstance(declared, str | bytes) or not isinstance(declared, Sequence):
        raise HookFailure(f"RulePack.detailed_findings of {record.name!r} must be a list of finding ids or None")
    return tuple(check_text(finding, "RulePack.detailed_findings entry", MAX_NAME_CHARS) for finding in declared)


def _plain_schema(pack: str, schema: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    try:
        plain: dict[str, Any] = json.loads(json.dumps(schema, default=_plain_container))
    except (TypeError, ValueError) as exc:
        raise HookFailure(f"RulePack.facts_schema of {pack!r} is not JSON data: {exc}") from None
    return plain


def _plain_container(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


def check_computed(
    out: Any, own_packs: Mapping[str, Sequence[str]], kinds: Mapping[str, str]
) -> tuple[str, dict[str, Any], dict[str, list[str]]] | None:
    """Check what ``neurocds_compute_facts`` returned: ``(pack, values, because)`` or ``None``.

    :param own_packs: name -> namespaces, for every pack the calling plugin registered.
    :param kinds: derived-fact name -> the kind of value rules use it as.
    """
    if out is None:
        return None
    if not isinstance(out, ComputedFacts):
        raise HookFailure(f"neurocds_compute_facts must return ComputedFacts or None, got {type(out).__name__}")
    if not isinstance(out.pack, str) or out.pack not in own_packs:
        raise HookFailure(f"ComputedFacts.pack {out.pack!r} is not one of its own packs ({', '.join(own_packs)})")
    if not isinstance(out.values, Mapping) or len(out.values) > MAX_COMPUTED_VALUES:
        raise HookFailure(f"ComputedFacts.values must be a mapping of at most {MAX_COMPUTED_VALUES} facts")
    namespaces = own_packs[out.pack]
    values: dict[str, Any] = {}
    for name, value in out.values.items():
        check_text(name, "computed fact name", MAX_NAME_CHARS)
        if not any(name.startswith(ns + ".") for ns in namespaces):
            owned = ", ".join(repr(ns) for ns in namespaces) or "none"
            raise HookFailure(f"computed fact {name!r} is outside the namespaces of pack {out.pack!r} ({owned})")
        values[name] = _check_scalar(name, value, kinds.get(name))
    because: dict[str, list[str]] = {}
    raw_because = out.because if isinstance(out.because, Mapping) else None
    if raw_because is None:
        raise HookFailure("ComputedFacts.because must be a mapping")
    for name, pointers in raw_because.items():
        if name not in values:
            raise HookFailure(f"ComputedFacts.because names {name!r}, which is not among its values")
        if isinstance(pointers, str) or not isinstance(pointers, Sequence) or len(pointers) > MAX_BECAUSE_POINTERS:
            raise HookFailure(f"ComputedFacts.because[{name!r}] must be a list of JSON pointers")
        because[name] = [check_text(p, "JSON pointer", MAX_NAME_CHARS) for p in pointers]
    return out.pack, values, because


def _check_scalar(name: str, value: Any, used_as: str | None) -> Any:
    kind = type(value)
    if kind is bool:
        found = "boolean"
    elif kind is int:
        if not -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
            raise HookFailure(f"computed fact {name!r} is an integer beyond ±2**53")
        found = "number"
    elif kind is float:
        if not math.isfinite(value):
            raise HookFailure(f"computed fact {name!r} must be a finite JSON scalar, not {value!r}")
        found = "number"
    elif kind is str:
        check_text(value, f"computed fact {name!r}", MAX_STRING_VALUE_CHARS)
        found = "string"
    else:
        raise HookFailure(
            f"computed fact {name!r} must be a finite JSON scalar (string, number or boolean), not {kind.__name__}"
        )
    if used_as is not None and found != used_as:
        raise HookFailure(f"computed fact {name!r} is a {found}; rules use it as a {used_as}")
    return value
