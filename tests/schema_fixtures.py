"""Pack extension schemas shared by the validator tests."""

PACK_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"score": {"type": "integer", "minimum": 0}, "label": {"type": "string"}},
}
# Uses keywords the fast path does not compile ($ref, anyOf): exercises the jsonschema fallback.
REF_PACK_SCHEMA = {
    "$defs": {"grade": {"type": "integer", "minimum": 0, "maximum": 3}},
    "type": "object",
    "properties": {
        "grade": {"$ref": "#/$defs/grade"},
        "either": {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
    },
    "additionalProperties": False,
}
