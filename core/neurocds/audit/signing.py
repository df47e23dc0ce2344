"""Ed25519 keys and signed checkpoints.

A checkpoint signs ``(sequence, head_hash, signed_at, key_id)`` under a fixed
domain tag, so a signature over anything else can never pass as a checkpoint.
The private key must live outside the log directory: whoever can write the log
must not also be able to re-sign a rewritten one. Verifying needs only the
public key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from neurocds.audit._canon import canonical_json
from neurocds.audit.errors import AuditError
from neurocds.audit.files import write_synced

CHECKPOINT_KIND = "neurocds-audit-checkpoint"
CHECKPOINT_VERSION = "1"
_STATEMENT_KEYS = ("sequence", "head_hash", "signed_at", "key_id")


def public_key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def is_inside(path: Path, directory: Path) -> bool:
    """True when ``path`` (resolved, symlinks followed) lies in ``directory``."""
    p, d = Path(path).resolve(), Path(directory).resolve()
    return p == d or d in p.parents


def refuse_inside(key_path: Path, directory: Path | None) -> None:
    if directory is not None and is_inside(key_path, directory):
        raise AuditError(
            f"signing key {key_path} lies inside the audit directory {directory}; keep it "
            "elsewhere so whoever can edit the log cannot also re-sign it"
        )


def generate_keypair(private_out: Path, public_out: Path, *, audit_dir: Path | None = None) -> str:
    """Write a new Ed25519 key pair (PEM; private file mode 0600) and return its key id.

    Refuses to overwrite either file or to put the private key in ``audit_dir``.
    """
    refuse_inside(private_out, audit_dir)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for path in (private_out, public_out):
        if Path(path).exists():
            raise AuditError(f"{path} already exists; not overwriting a key")
    # exact_mode: the umask must not narrow what we asked for (0644 for the public key).
    write_synced(private_out, private_pem, os.O_CREAT | os.O_EXCL, 0o600, exact_mode=True)
    write_synced(public_out, public_pem, os.O_CREAT | os.O_EXCL, 0o644, exact_mode=True)
    return public_key_id(key.public_key())


def load_private_key(path: Path, *, audit_dir: Path | None = None) -> Ed25519PrivateKey:
    """Load a PEM Ed25519 private key, refusing one others can read or one in the log dir."""
    path = Path(path)
    refuse_inside(path, audit_dir)
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read signing key {path}: {exc}") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditError(f"signing key {path} is accessible to other users (mode {st.st_mode & 0o777:o}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read public key {path}: {exc}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise AuditError(f"{path} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path} is not an Ed25519 public key")
    return key


def _statement_bytes(body: dict[str, Any]) -> bytes:
    statement = {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION}
    statement.update({k: body[k] for k in _STATEMENT_KEYS})
    return canonical_json(statement)


def sign_checkpoint(key: Ed25519PrivateKey, *, sequence: int, head_hash: str, signed_at: str) -> dict[str, Any]:
    """The body of a checkpoint record: the statement fields plus a base64 signature."""
    body: dict[str, Any] = {
        "sequence": sequence,
        "head_hash": head_hash,
        "signed_at": signed_at,
        "key_id": public_key_id(key.public_key()),
    }
    body["signature"] = base64.b64encode(key.sign(_statement_bytes(body))).decode("ascii")
    return body


def check_signature(body: dict[str, Any], public_key: Ed25519PublicKey) -> str | None:
    """``None`` when ``body`` is a valid checkpoint signed by ``public_key``, else why not."""
    try:
        missing = [k for k in (*_STATEMENT_KEYS, "signature") if k not in body]
        if missing:
            return f"checkpoint lacks {', '.join(missing)}"
        expected_id = public_key_id(public_key)
        if body["key_id"] != expected_id:
            return f"checkpoint names signing key {body['key_id']}, but the given public key is {expected_id}"
        signature = base64.b64decode(str(body["signature"]), validate=True)
        public_key.verify(signature, _statement_bytes(body))
    except InvalidSignature:
        return "checkpoint signature is not valid for its content (edited or forged)"
    except (ValueError, TypeError) as exc:
        return f"checkpoint signature is malformed: {exc}"
    return None
