"""A local OpenID provider (oidc-provider-mock) on a free 127.0.0.1 port, and Meshboard's settings pointed at it."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import werkzeug.serving

CLIENT_ID = "meshboard-tests"
CLIENT_SECRET = "a-client-secret"


@dataclass
class Provider:
    url: str

    def set_user(self, sub: str, claims: dict) -> None:
        """What the provider says about `sub` at its next login (its claims, the role claim included)."""
        request = urllib.request.Request(
            f"{self.url}/users/{sub}",
            data=json.dumps(claims).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 204


@pytest.fixture
def oidc_provider(settings) -> Iterator[Provider]:
    from oidc_provider_mock import app

    server = werkzeug.serving.make_server("127.0.0.1", 0, app(require_nonce=True), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    settings.MESHBOARD_OIDC = True
    settings.AUTHENTICATION_BACKENDS = ["apps.clusters.sso.LocalBackend", "apps.clusters.sso.OIDCBackend"]
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{url}/oauth2/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{url}/oauth2/token"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{url}/jwks"
    settings.OIDC_OP_USER_ENDPOINT = ""
    try:
        yield Provider(url)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
