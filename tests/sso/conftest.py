"""A local OpenID provider (oidc-provider-mock) on a free 127.0.0.1 port, and Meshboard's settings pointed at it."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

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
    # The mock's one signing key has no `kid` (Entra ID's keys do): match it by algorithm; the signature is checked.
    settings.OIDC_VERIFY_KID = False
    try:
        yield Provider(url)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def sso_login(client, provider: Provider, sub: str):
    """The code flow through Django's test client: Meshboard sends the browser to the provider, the provider's
    form is submitted for `sub`, and its redirect back to Meshboard's callback is followed. The callback's answer."""
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302 and start["Location"].startswith(provider.url), start
    form = urllib.request.Request(start["Location"], data=urlencode({"sub": sub}).encode(), method="POST")
    try:
        urllib.request.build_opener(_NoRedirect).open(form, timeout=10)
        raise AssertionError("the provider did not redirect back")
    except urllib.error.HTTPError as redirect:
        back = redirect.headers["Location"]
    parts = urlsplit(back)
    assert parts.path == "/oidc/callback/", back
    return client.get(f"{parts.path}?{parts.query}")
