"""The README's worked example, end to end: keys, serve, curl-equivalent call, cards, feedback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .spec import assert_response
from .support import http_call, serve_process

ROOT = Path(__file__).resolve().parents[2]
KEYS_SCRIPT = ROOT / "examples" / "cdshooks" / "ehr_keys.py"
REQUEST = ROOT / "examples" / "cdshooks" / "patient-view-request.json"
ISSUER = "https://ehr.example.org"
SERVICE = "/cds-services/neurocds-patient-view"


def script(*args: str) -> str:
    done = subprocess.run([sys.executable, str(KEYS_SCRIPT), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_worked_example(tmp_path: Path) -> None:
    key, jwks = tmp_path / "ehr-key.pem", tmp_path / "ehr-jwks.json"
    script("keygen", "--private", str(key), "--jwks", str(jwks))
    assert key.stat().st_mode & 0o077 == 0  # the private key is readable by its owner only
    assert json.loads(jwks.read_text())["keys"][0]["alg"] == "ES384"
    # The example's labs are dated 2026-11-20; a wide window keeps them from going stale.
    args = ["--issuer", f"{ISSUER}={jwks}", "--observation-window-days", "3650", "--audit-dir", str(tmp_path / "a")]
    with serve_process(args) as served:
        base = f"http://127.0.0.1:{served.port}"
        token = script("token", "--private", str(key), "--iss", ISSUER, "--aud", base + SERVICE)
        headers = {"Content-Type": "application/json"}
        resp = http_call(served.port, "POST", SERVICE, raw=REQUEST.read_bytes(), token=token, headers=headers)
        assert resp.status == 200, resp.body
        cards = assert_response(resp.json())
        finding = cards[0]
        assert finding["indicator"] == "critical"
        assert finding["source"]["topic"]["code"] == "neuromuscular.electrolyte_imbalance"
        assert "potassium" in finding["detail"].lower()
        replay = http_call(served.port, "POST", SERVICE, raw=REQUEST.read_bytes(), token=token, headers=headers)
        assert replay.status == 401  # a token is good for one call
        item = {"card": finding["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-20T09:00:00Z"}
        feedback = {"feedback": [item]}
        fb_token = script("token", "--private", str(key), "--iss", ISSUER, "--aud", f"{base}{SERVICE}/feedback")
        fb = http_call(served.port, "POST", f"{SERVICE}/feedback", feedback, token=fb_token)
        assert fb.status == 200
