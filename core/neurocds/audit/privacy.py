"""Patient pseudonyms: keyed HMAC-SHA256 of the patient id, never the id itself.

The key decides who can link a pseudonym back to a person (by recomputing it for
a known id), so where it lives matters:

* given explicitly (``pseudonym_key`` bytes, ``NEUROCDS_AUDIT_PSEUDONYM_KEY`` hex, or
  a key file): used as is. Redaction mode requires this, and a key file must then
  lie outside the log directory and be readable by its owner only (as a signing
  key must): a key stored beside the pseudonyms would let whoever reads the log
  test any patient id against them.
* not given and redaction off: a random key is created once in the log directory
  (``pseudonym.key``, mode 0600). The unredacted log holds the facts anyway, so a
  key beside it reveals nothing new, and queries by patient always work.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neurocds.audit.errors import AuditError
from neurocds.audit.files import write_synced
from neurocds.audit.settings import PSEUDONYM_KEY_ENV, PSEUDONYM_KEY_FILE_ENV

AUTO_KEY_NAME = "pseudonym.key"
_MIN_KEY_BYTES = 16
# Domain-separated so the key id can never equal the pseudonym of any patient id.
_KEY_ID_LABEL = b"neurocds-audit-pseudonym-key-id\x00"


def pseudonymise(key: bytes, patient_id: str) -> str:
    """Return the hex HMAC-SHA256 of ``patient_id`` under ``key``."""
    return hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A short public fingerprint of the key, stored so mismatched keys are noticed."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def parse_hex_key(text: str, *, origin: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise AuditError(f"pseudonym key from {origin} is not hex") from exc
    if len(key) < _MIN_KEY_BYTES:
        raise AuditError(f"pseudonym key from {origin} is shorter than {_MIN_KEY_BYTES} bytes")
    return key


def read_key_file(path: Path, *, private: bool = False) -> bytes:
    """Read a key file holding hex text (as written by :func:`write_key_file`).

    :param private: refuse a file that other users may read or write.
    """
    try:
        mode = Path(path).stat().st_mode
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read pseudonym key file {path}: {exc}") from exc
    if private and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditError(
            f"pseudonym key file {path} is accessible to other users (mode {mode & 0o777:o}); chmod 600 it"
        )
    return parse_hex_key(text, origin=str(path))


def write_key_file(path: Path, key: bytes) -> None:
    """Create ``path`` with mode 0600 (never overwrite) holding ``key`` as hex."""
    write_synced(path, key.hex().encode("ascii") + b"\n", os.O_CREAT | os.O_EXCL)


def key_from_env(environ: Mapping[str, str]) -> bytes | None:
    if environ.get(PSEUDONYM_KEY_ENV):
        return parse_hex_key(environ[PSEUDONYM_KEY_ENV], origin=PSEUDONYM_KEY_ENV)
    if environ.get(PSEUDONYM_KEY_FILE_ENV):
        return read_key_file(Path(environ[PSEUDONYM_KEY_FILE_ENV]))
    return None


def auto_key(directory: Path, *, create: bool) -> bytes | None:
    """The key kept in the log directory, created on first use when ``create``."""
    path = directory / AUTO_KEY_NAME
    if path.exists():
        return read_key_file(path)
    if not create:
        return None
    # Write aside, then link into place: link() is atomic and fails if another
    # process won the race, so nobody ever reads a half-written key.
    tmp = directory / f".{AUTO_KEY_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    write_key_file(tmp, secrets.token_bytes(32))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first: use theirs
    finally:
        tmp.unlink()
    return read_key_file(path)


UNKNOWN_MEMBER = "<unknown-member>"
_WITHHELD = "(message withheld: it names a member the facts schema does not define)"


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def scrub_member_names(violation: Mapping[str, Any], facts_schema: Mapping[str, Any]) -> dict[str, Any]:
    """``violation`` with every member name the facts schema does not define replaced.

    A rejected document may carry members the caller named freely (a patient's name
    as a key); a redacted log must not keep them. The pointer is cut at the first
    such name, which becomes :data:`UNKNOWN_MEMBER` (what lies below it was chosen by
    the caller too); the name is replaced in the message, and a message that would
    still hold it is withheld.
    """
    out = dict(violation)
    pointer = str(violation.get("pointer", ""))
    tokens = [_unescape(t) for t in pointer.split("/")[1:]] if pointer.startswith("/") else []
    node: Any = facts_schema
    for depth, token in enumerate(tokens):
        properties = node.get("properties") if isinstance(node, Mapping) else None
        if isinstance(properties, Mapping) and token in properties:
            node = properties[token]
        elif isinstance(node, Mapping) and isinstance(node.get("items"), Mapping) and token.isdigit():
            node = node["items"]
        else:
            kept = pointer.split("/")[: depth + 1]
            out["pointer"] = "/".join([*kept, UNKNOWN_MEMBER])
            unknown = [t for t in tokens[depth:] if not t.isdigit()]
            for key in ("message", "expected"):
                if isinstance(out.get(key), str):
                    out[key] = _without_names(out[key], unknown)
            break
    return out


def _without_names(text: str, names: list[str]) -> str:
    for name in names:
        text = text.replace(repr(name), repr(UNKNOWN_MEMBER)).replace(json.dumps(name), repr(UNKNOWN_MEMBER))
    return _WITHHELD if any(name in text for name in names) else text
