"""neurocds.cdshooks: the CDS Hooks 2.0 HTTP service (``neurocds serve``).

A capability on top of the engine. May import: every stage and
``neurocds.engine``; not ``neurocds.replay`` or ``neurocds.cli``.

from neurocds.cdshooks import ServiceConfig, create_app
app = create_app(ServiceConfig(base_url="https://cds.example.org", issuers={"https://ehr": "jwks.json"}))
"""

from __future__ import annotations

from typing import Any

from neurocds.cdshooks.config import INSECURE_HEADER, ConfigError, ServiceConfig


def __getattr__(name: str) -> Any:
    # Lazy: the CLI reads option defaults from cdshooks.config, and importing this package
    # must not load Starlette and uvicorn for every `neurocds` command.
    if name == "create_app":
        from neurocds.cdshooks.app import create_app

        return create_app
    raise AttributeError(name)


__all__ = ["INSECURE_HEADER", "ConfigError", "ServiceConfig", "create_app"]
