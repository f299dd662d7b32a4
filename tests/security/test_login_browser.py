"""In Chromium: ten wrong passwords from one client lock that client out for the configured time, while the same
user logs in from another address (a second client address through tests/security/relay.py)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from tests.browser_fixtures import screenshot

from .relay import Relay

RIGHT = "a-long-operator-pass"
LOCKOUT_SECONDS = 6


@pytest.fixture
def other_address(live_server):
    """A base URL through which the live server sees the browser as 127.0.0.2."""
    parts = urlsplit(live_server.url)
    relay = Relay(("127.0.0.1", parts.port)).start()
    yield f"http://127.0.0.1:{relay.port}"
    relay.stop()


def _try(page, base_url: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", "otto")
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_ten_wrong_passwords_lock_that_client_out_but_not_the_user_elsewhere(
    browser, live_server, other_address, operator, redis, settings, caplog
):
    settings.MESHBOARD_LOGIN_FAILURES = 10
    settings.MESHBOARD_LOGIN_LOCKOUT_SECONDS = LOCKOUT_SECONDS
    here = browser.new_context()
    elsewhere = browser.new_context()
    try:
        attacker = here.new_page()
        for i in range(10):
            _try(attacker, live_server.url, f"wrong-password-{i}")
            assert attacker.locator('[data-code="invalid_login"]').count() == 1
        locked_at = time.monotonic()
        assert attacker.locator('[data-code="locked_out"]').is_visible()

        # The right password from the locked client: refused, with when to try again.
        _try(attacker, live_server.url, RIGHT)
        assert "/accounts/login/" in attacker.url
        message = attacker.locator('[data-code="locked_out"]').inner_text()
        assert "Too many failed logins for this username from your address. Try again after" in message
        screenshot(attacker, "login-locked-out")

        # The same user from another address logs in at once.
        operator_page = elsewhere.new_page()
        _try(operator_page, other_address, RIGHT)
        assert operator_page.url.split("?")[0] == f"{other_address}/"
        assert operator_page.locator(".who").inner_text().startswith("otto")

        # The server saw two clients; the failures were logged one line each, from 127.0.0.1 only.
        failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("login failed")]
        assert len(failed) == 10 and all("client=127.0.0.1 " in line for line in failed)

        # After the configured time the first client may log in again.
        time.sleep(max(0.0, LOCKOUT_SECONDS + 0.5 - (time.monotonic() - locked_at)))
        _try(attacker, live_server.url, RIGHT)
        assert attacker.url.split("?")[0] == f"{live_server.url}/"
    finally:
        here.close()
        elsewhere.close()
