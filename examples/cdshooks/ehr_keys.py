"""Play the EHR's side of CDS Hooks security: an ES384 key pair, its JWK Set, signed tokens.

    python examples/cdshooks/ehr_keys.py keygen --private ehr-key.pem --jwks ehr-jwks.json
    python examples/cdshooks/ehr_keys.py token --private ehr-key.pem \\
        --iss https://ehr.example.org --aud http://127.0.0.1:8080/cds-services/neurocds-patient-view

``keygen`` writes the private key (PEM, mode 0600: it stays with the EHR) and the
public JWK Set that ``neurocds serve --issuer ISS=ehr-jwks.json`` trusts.
``token`` prints one JWT as the CDS Hooks specification asks an EHR to send:
ES384, ``iss``, ``aud`` = the exact endpoint URL called, ``iat``, ``exp`` five
minutes later and a fresh ``jti`` (the service refuses a ``jti`` it has seen, so
make a new token for every call). For trying the service, not for production:
a real EHR keeps its key in its own key store.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

LIFETIME_SECONDS = 300  # the specification's maximum, and the service's


def keygen(private: Path, jwks: Path, kid: str) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite a key
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwks.write_text(json.dumps({"keys": [{**public, "kid": kid, "alg": "ES384", "use": "sig"}]}, indent=2) + "\n")
    print(f"private key: {private} (keep it with the EHR)\nJWK Set:     {jwks} (give it to neurocds serve --issuer)")


def token(private: Path, iss: str, aud: str, kid: str, sub: str) -> str:
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    now = int(time.time())
    claims = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + LIFETIME_SECONDS, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": kid, "typ": "JWT"})  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("keygen", help="write an ES384 private key and its public JWK Set")
    make.add_argument("--private", type=Path, required=True)
    make.add_argument("--jwks", type=Path, required=True)
    make.add_argument("--kid", default="ehr-es384-1")
    sign = commands.add_parser("token", help="print one signed JWT for one endpoint URL")
    sign.add_argument("--private", type=Path, required=True)
    sign.add_argument("--iss", required=True, help="the issuer name given to neurocds serve --issuer")
    sign.add_argument("--aud", required=True, help="the exact URL the call goes to (under --base-url)")
    sign.add_argument("--kid", default="ehr-es384-1")
    sign.add_argument("--sub", default="example-ehr-client")
    args = parser.parse_args()
    if args.command == "keygen":
        keygen(args.private, args.jwks, args.kid)
    else:
        print(token(args.private, args.iss, args.aud, args.kid, args.sub))


if __name__ == "__main__":
    main()
