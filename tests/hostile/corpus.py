"""Hostile facts documents: cheap to send, each must be refused cheaply and with a pointer.

Each item is ``(name, body, pointer)``: the raw JSON bytes (every one under the 1 MiB
size limit unless its name says otherwise) and a JSON pointer the refusal must name.
Shared by tests/hostile/ and tests/perf/bench_refusal.py, so that the benchmark
measures exactly what the tests refuse.
"""

from __future__ import annotations

import json

LIMIT = 1_048_576
HEAD = b'{"facts_version":"1","patient":{"id":"p1"},'


def _fill(prefix: bytes, item: bytes, suffix: bytes, *, sep: bytes = b",") -> bytes:
    """``prefix item,item,... suffix`` with as many items as fit under the size limit."""
    room = LIMIT - len(prefix) - len(suffix) - 16
    count = room // (len(item) + len(sep))
    return prefix + sep.join([item] * count) + suffix


def _keyed(prefix: bytes, template: str, suffix: bytes) -> bytes:
    """``prefix "k0":.., "k1":.. suffix``: distinct member names, as many as fit."""
    parts: list[bytes] = []
    size = len(prefix) + len(suffix) + 16
    i = 0
    while True:
        part = template.format(i).encode()
        if size + len(part) + 1 > LIMIT:
            break
        parts.append(part)
        size += len(part) + 1
        i += 1
    return prefix + b",".join(parts) + suffix


def corpus() -> list[tuple[str, bytes, str]]:
    """Every hostile shape, in a fixed order (names are stable test ids)."""
    # More objects and arrays, members or values than the parse limits allow: refused at the root
    # before parsing. UNCAPPED keeps what each names when the limits are lifted.
    return [(name, body, "" if name in UNCAPPED else pointer) for name, body, pointer in _shapes()]


def _shapes() -> list[tuple[str, bytes, str]]:
    """Every hostile shape with the pointer it names once under (or without) the parse limits."""
    return [
        ("surrogate-member-name", HEAD + b'"\\ud800":1}', "/\\ud800"),
        ("surrogate-patient-id", b'{"facts_version":"1","patient":{"id":"\\udfff"}}', "/patient/id"),
        (
            "surrogate-medication-name",
            HEAD + b'"medications":[{"name":"a\\ud800b","class":"statin"}]}',
            "/medications/0/name",
        ),
        ("int-4301-digits", HEAD + b'"labs":{"potassium_mmol_l":' + b"9" * 4301 + b"}}", "/labs/potassium_mmol_l"),
        ("int-beyond-float", HEAD + b'"labs":{"potassium_mmol_l":1' + b"0" * 400 + b"}}", "/labs/potassium_mmol_l"),
        ("nan", HEAD + b'"labs":{"potassium_mmol_l":NaN}}', "/labs/potassium_mmol_l"),
        ("medications-500k-ints", _fill(HEAD + b'"medications":[', b"1", b"]}"), "/medications/0"),
        ("medications-unknown-objects", _fill(HEAD + b'"medications":[', b'{"zz":0}', b"]}"), "/medications/0/zz"),
        ("unknown-empty-objects", _fill(HEAD + b'"extensions":{"x":[', b"{}", b"]}}"), "/extensions/x"),
        ("labs-unknown-members", _keyed(HEAD + b'"labs":{', '"k{}":1', b"}}"), "/labs/k0"),
        ("top-unknown-members", _keyed(b'{"facts_version":"1","patient":{"id":"p1"},', '"u{}":0', b"}"), "/u0"),
        ("array-of-nan", _fill(HEAD + b'"medications":[', b"NaN", b"]}"), "/medications/0"),
        ("duplicate-keys", _fill(b'{"facts_version":"1","patient":{"id":"p1"},"labs":{', b'"a":1', b"}}"), "/labs/a"),
        ("surrogate-strings", _fill(HEAD + b'"medications":[', b'"\\ud800"', b"]}"), "/medications/0"),
        ("deep-nesting", b'{"extensions":' + b"[" * 200_000 + b"]" * 200_000 + b"}", ""),
        (
            "long-patient-id",
            b'{"facts_version":"1","patient":{"id":' + json.dumps("x" * 1_000_000).encode() + b"}}",
            "/patient/id",
        ),
        ("ansi-member-name", HEAD + b'"\\u001b[31mred":1}', "/\x1b[31mred"),
        ("over-size-limit", b'{"facts_version":"1","patient":{"id":"' + b"x" * LIMIT + b'"}}', ""),
        # The worst shapes for the C-speed paths (tests/hostile/test_fast_paths_agree.py): nesting
        # at the limit everywhere, many small objects, escapes, repeated names, and a problem
        # that must be named after hundreds of thousands of clean values.
        ("nesting-at-the-limit", _fill(HEAD + b'"extensions":{"x":[', b"[" * 61 + b"]" * 61, b"]}}"), "/extensions/x"),
        ("many-short-keys", _fill(HEAD + b'"medications":[', b'{"a":0,"b":0,"c":0,"d":0}', b"]}"), "/medications/0/a"),
        ("escaped-long-string", HEAD[:-1] + b',"labs":{"potassium_mmol_l":"' + b"\\u00e9" * 170_000 + b'"}}',
         "/labs/potassium_mmol_l"),
        ("many-duplicate-names", _keyed(HEAD + b'"labs":{', '"k{0}":1,"k{0}":1', b"}}"), "/labs/k0"),
        ("duplicates-in-many-objects", _fill(HEAD + b'"medications":[', b'{"a":1,"a":1}', b"]}"), "/medications/0/a"),
        ("nan-after-many-objects", *_after_clean(b"NaN")),
        ("surrogate-after-many-objects", *_after_clean(b'"\\ud800"')),
        # Parses (the exact path: orjson cannot keep a 30-digit integer); the schema refuses it.
        ("long-integer-after-many-objects", _after_clean(b"123456789012345678901234567890")[0], "/medications/0/name"),
        # The worst shapes under the container limit: as many containers as it allows, and
        # the rest of the megabyte spent where each stage is slowest.
        (
            "duplicates-in-10k-objects",
            _fill(HEAD + b'"medications":[' + b",".join([b'{"a":1,"a":1}'] * _UNDER_LIMIT) + b",", b"1", b"]}"),
            "/medications/0/a",
        ),
        ("nan-after-10k-objects-and-ints", *_after_objects_and_ints(b"NaN")),
        ("number-beyond-float-after-ints", *_after_ints(b"1e400")),
        ("integer-beyond-float-after-ints", *_after_ints(b"1" + b"0" * 400)),
        ("duplicate-numeric-names", _keyed(HEAD + b'"labs":{', '"{0}":1,"{0}":1', b"}}"), "/labs/0"),
        ("duplicate-escaped-names", _keyed(HEAD + b'"labs":{', '"k\\u003a{0}":1,"k\\u003a{0}":1', b"}}"), "/labs/k:0"),
        ("unknown-objects-at-the-limit", _objects(_UNDER_LIMIT, b'{"zz":0}'), "/medications/0/zz"),
        ("duplicate-names-at-the-member-limit", *_names_then_ints('"k{0}":1,"k{0}":1')),
        ("duplicate-numeric-names-at-the-member-limit", *_names_then_ints('"{0}":1,"{0}":1')),
        ("one-container-over-the-limit", _objects(CONTAINER_LIMIT - 2, b"{}"), ""),
        # The worst shape under the value limit: as many integers as it allows, a problem to
        # name after them, and the rest of the megabyte in one string.
        ("nan-after-ints-at-the-value-limit", *_ints_at_the_value_limit(b"NaN")),
    ]


def _names_then_ints(template: str) -> tuple[bytes, str]:
    """As many members in ``labs`` as the member limit allows (each name written twice by
    ``template``), then integers for the rest of the megabyte."""
    names = b",".join(template.format(i).encode() for i in range((MEMBER_LIMIT - 10) // 2))
    body = _fill(HEAD + b'"labs":{' + names + b'},"medications":[', b"1", b"]}")
    return body, "/labs/" + template.format(0).split(":")[0].strip('"')


def _objects(count: int, item: bytes) -> bytes:
    """``count`` objects in ``medications``: with the root and the list, count + 2 containers."""
    return HEAD + b'"medications":[' + b",".join([item] * count) + b"]}"


def _after_ints(last: bytes) -> tuple[bytes, str]:
    """Half a million integers, then ``last``: the problem to name is at the very end."""
    body = _fill(HEAD + b'"medications":[', b"1", b"," + last + b"]}")
    return body, f"/medications/{body.count(b',1')}"


def _after_objects_and_ints(last: bytes) -> tuple[bytes, str]:
    """As many empty objects as the container limit allows, integers, then ``last``."""
    body = _fill(HEAD + b'"medications":[' + b",".join([b"{}"] * _UNDER_LIMIT) + b",", b"1", b"," + last + b"]}")
    return body, f"/medications/{body.count(b',') - 2}"


def _ints_at_the_value_limit(last: bytes) -> tuple[bytes, str]:
    """As many integers as the value limit allows, then ``last``, then one long string."""
    count = VALUE_LIMIT - 10
    prefix = HEAD + b'"medications":[' + b",".join([b"1"] * count) + b"," + last + b'],"x":"'
    return prefix + b"x" * (LIMIT - len(prefix) - 16) + b'"}', f"/medications/{count}"


def _after_clean(last: bytes) -> tuple[bytes, str]:
    """350,000 empty objects, then ``last``: the problem to name is at the very end."""
    body = _fill(HEAD + b'"medications":[', b"{}", b"," + last + b"]}")
    return body, f"/medications/{body.count(b'{}')}"


#: The default ParseLimits.max_containers, max_members and max_values.
CONTAINER_LIMIT = 10_000
MEMBER_LIMIT = 25_000
VALUE_LIMIT = 50_000
# Objects that leave room for the few of the document around them.
_UNDER_LIMIT = CONTAINER_LIMIT - 10
#: Shapes over the container, member or value limit -> the pointer named with those limits lifted (None).
UNCAPPED = {
    "medications-unknown-objects": "/medications/0/zz",
    "unknown-empty-objects": "/extensions/x",
    "nesting-at-the-limit": "/extensions/x",
    "many-short-keys": "/medications/0/a",
    "duplicates-in-many-objects": "/medications/0/a",
    "nan-after-many-objects": _after_clean(b"NaN")[1],
    "surrogate-after-many-objects": _after_clean(b'"\\ud800"')[1],
    "long-integer-after-many-objects": "/medications/0/name",
    "one-container-over-the-limit": "/medications/0/name",
    "labs-unknown-members": "/labs/k0",
    "top-unknown-members": "/u0",
    "duplicate-keys": "/labs/a",
    "many-duplicate-names": "/labs/k0",
    "duplicate-numeric-names": "/labs/0",
    "duplicate-escaped-names": "/labs/k:0",
}
#: Shapes over the value limit only: with it lifted, each names the pointer its item gives.
_OVER_THE_VALUE_LIMIT = {
    "medications-500k-ints",
    "array-of-nan",
    "surrogate-strings",
    "duplicates-in-10k-objects",
    "nan-after-10k-objects-and-ints",
    "number-beyond-float-after-ints",
    "integer-beyond-float-after-ints",
    "duplicate-names-at-the-member-limit",
    "duplicate-numeric-names-at-the-member-limit",
}
UNCAPPED.update((name, pointer) for name, _body, pointer in _shapes() if name in _OVER_THE_VALUE_LIMIT)

# FHIR text (a Bundle, a CDS Hooks call with prefetch) is held to size and depth only
# (neurocds.facts.limits.fhir_limits): no count limits, so each refusal below must stay
# cheap on its own, whatever the megabyte holds.
_BUNDLE = b'{"resourceType":"Bundle","type":"collection","entry":['
_CALL = (
    b'{"hook":"patient-view","hookInstance":"h1","context":{"userId":"Practitioner/1","patientId":"p1"},'
    b'"prefetch":{"patient":{"resourceType":"Patient","id":"p1"},"observations":' + _BUNDLE
)


def _bundle_then(item: bytes, last: bytes, *, head: bytes = _BUNDLE, tail: bytes = b"]}") -> tuple[bytes, int]:
    """``head`` then as many ``item`` as fit, then ``last`` (at the index returned) and ``tail``."""
    body = _fill(head, item, b"," + last + tail)
    return body, body.count(item)


def fhir_corpus() -> list[tuple[str, bytes, str]]:
    """The worst FHIR shapes under the 1 MiB limit, each with the pointer its refusal names."""
    clean = b'{"resource":{"resourceType":"Observation","id":"o","status":"final"}}'
    repeat_at_end, at = _bundle_then(clean, b'{"resource":{"id":"a","id":"b"}}')
    nan_at_end, nan_at = _bundle_then(clean, b'{"resource":{"valueQuantity":{"value":NaN}}}')
    surrogate_at_end, surrogate_at = _bundle_then(clean, b'{"resource":{"id":"\\ud800"}}')
    integer_at_end, integer_at = _bundle_then(clean, b'{"resource":{"valueInteger":1' + b"0" * 400 + b"}}")
    call_repeats, _ = _bundle_then(b'{"a":1,"a":1}', b"{}", head=_CALL, tail=b"]}}}")
    resources_repeating = _fill(_BUNDLE, b'{"resource":{"id":"a","id":"b"}}', b"]}")
    return [
        ("fhir-objects-repeating-a-name", _fill(_BUNDLE, b'{"a":1,"a":1}', b"]}"), "/entry/0/a"),
        ("fhir-resources-repeating-a-name", resources_repeating, "/entry/0/resource/id"),
        ("fhir-call-prefetch-repeating-a-name", call_repeats, "/prefetch/observations/entry/0/a"),
        ("fhir-one-repeat-after-clean-resources", repeat_at_end, f"/entry/{at}/resource/id"),
        ("fhir-nan-after-clean-resources", nan_at_end, f"/entry/{nan_at}/resource/valueQuantity/value"),
        ("fhir-surrogate-after-clean-resources", surrogate_at_end, f"/entry/{surrogate_at}/resource/id"),
        ("fhir-integer-beyond-float-after-clean", integer_at_end, f"/entry/{integer_at}/resource/valueInteger"),
        ("fhir-deep-nesting", _BUNDLE + b"[" * 500_000 + b"]" * 500_000 + b"]}", ""),
        ("fhir-many-nests-just-too-deep", _fill(_BUNDLE, b'{"a":' * 64 + b"1" + b"}" * 64, b"]}"), ""),
        ("fhir-empty-objects-then-syntax-error", _fill(_BUNDLE, b"{}", b",}]}"), ""),
    ]
