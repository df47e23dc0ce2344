"""A real FHIR R4 server on loopback for the fetch tests and benchmark: SEKMET (PyPI ``sekmet-fhir``).

SEKMET is pinned (0.1.1) and installed in a venv of its own, not the test venv: it
pulls in FastAPI and pins of its own, which must not decide what the service under
test runs on. Found, in this order, through the
``NEUROCDS_SEKMET`` variable (path of its ``sekmet`` command), ``sekmet`` on PATH,
or ``.venv-sekmet/bin/sekmet`` in the repository (README: "CDS Hooks service").

Configured from its defaults (``sekmet/config.py``) to be safe and quiet: bound
to 127.0.0.1 (its default is 0.0.0.0), bearer-token auth only with one static
token, inbound validation off (Synthea bundles are loaded as they are), the
workflow simulator off (it would act on MedicationRequests), no traffic log.
Patients are loaded with one FHIR transaction per Synthea bundle; the server
assigns its own ids, so :func:`load_patients` returns them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .support import SYNTHEA_DATA, free_socket, service_templates, stop_process

REPO = Path(__file__).resolve().parents[2]
TOKEN = "neurocds-test-fhir-token"
START_TIMEOUT = 60.0


def sekmet_command() -> str | None:
    candidates = [os.environ.get("NEUROCDS_SEKMET"), shutil.which("sekmet"), str(REPO / ".venv-sekmet/bin/sekmet")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


@dataclass
class FhirServer:
    base: str
    token: str
    proc: subprocess.Popen[bytes]

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", "Accept": "application/fhir+json"}
        return httpx.get(f"{self.base}/{path}", headers=headers, timeout=30)

    def prefetch(self, patient_id: str) -> dict[str, Any]:
        """What an EHR would prefetch: every template of the service answered, every page followed."""
        out: dict[str, Any] = {}
        for key, template in service_templates().items():
            doc = self.get(template.replace("{{context.patientId}}", patient_id)).json()
            if doc["resourceType"] == "Bundle":
                entries = list(doc.get("entry") or [])
                while nxt := next((li["url"] for li in doc.get("link", []) if li["relation"] == "next"), None):
                    doc = self.get(nxt.removeprefix(self.base + "/")).json()
                    entries += doc.get("entry") or []
                doc = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
            out[key] = doc
        return out


@contextmanager
def sekmet_server(folder: Path) -> Iterator[FhirServer]:
    command = sekmet_command()
    if command is None:
        raise RuntimeError("sekmet is not installed")
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    base = f"http://127.0.0.1:{port}/fhir"
    settings = {
        "base_url": base,
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(folder / "data"),
        "server_auth": {"types": ["bearer"], "tokens": [TOKEN]},
        "validation": {"inbound": "off"},
        "simulator": {"enabled": False},
        "log_inbound": False,
    }
    config = folder / "settings.yaml"
    config.write_text(json.dumps(settings), encoding="utf-8")  # JSON is YAML
    env = {**os.environ, "SEKMET_CONFIG": str(config)}
    with (folder / "sekmet.log").open("wb") as log:
        command_line = [command, "serve", "--config", str(config)]
        proc = subprocess.Popen(command_line, stdout=log, stderr=log, env=env, cwd=folder)
    server = FhirServer(base, TOKEN, proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sekmet exited: {(folder / 'sekmet.log').read_text(errors='replace')[-2000:]}")
            try:
                if server.get("metadata").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("sekmet did not start")
            time.sleep(0.2)
        yield server
    finally:
        stop_process(proc)


def load_patients(server: FhirServer, names: Sequence[str]) -> list[str]:
    """POST each Synthea bundle as a transaction; the server's ids of the patients, in order."""
    ids = []
    for name in names:
        bundle = (SYNTHEA_DATA / name).read_bytes()
        resp = httpx.post(
            server.base,
            content=bundle,
            headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/fhir+json"},
            timeout=120,
        )
        resp.raise_for_status()
        entries = resp.json()["entry"]
        location = next(e["response"]["location"] for e in entries if "Patient/" in e["response"]["location"])
        ids.append(location.split("Patient/")[1].split("/")[0])
    return ids
