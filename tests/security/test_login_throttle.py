"""Login throttling (apps/core/login_throttle.py) through HTTP, against a real Redis."""

from __future__ import annotations

import logging
import time

import pytest
from django.test import Client, RequestFactory

from apps.core.login_throttle import client_address

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
RIGHT = "a-long-operator-pass"  # the operator persona's password
HERE, ELSEWHERE = "203.0.113.7", "198.51.100.20"


def _login(client: Client, password: str, *, username: str = "otto", addr: str = HERE, url: str = LOGIN, **extra):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=addr, **extra)


def _logged_in(response) -> bool:
    return response.status_code == 302


def _locked(response) -> bool:
    return response.status_code == 200 and 'data-code="locked_out"' in response.content.decode()


@pytest.fixture
def throttle(settings, redis):
    settings.MESHBOARD_LOGIN_FAILURES = 10
    settings.MESHBOARD_LOGIN_CLIENT_FAILURES = 50
    settings.MESHBOARD_LOGIN_LOCKOUT_SECONDS = 900
    return settings


def test_it_locks_one_username_from_one_client_after_ten_failures(throttle, operator, caplog):
    caplog.set_level(logging.WARNING, logger="apps.core.login_throttle")
    for i in range(9):
        response = _login(Client(), f"wrong-{i}")
        assert response.status_code == 200 and 'data-code="invalid_login"' in response.content.decode()
    tenth = _login(Client(), "wrong-9")
    assert 'data-code="invalid_login"' in tenth.content.decode() and _locked(tenth)

    # Locked: even the right password is not checked from this client...
    refused = _login(Client(), RIGHT)
    assert _locked(refused)
    assert "Too many failed logins for this username from your address. Try again after" in refused.content.decode()
    # ...while the same user logs in from another address, and another user from this one.
    assert _logged_in(_login(Client(), RIGHT, addr=ELSEWHERE))

    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("login failed")]
    assert len(failures) == 10  # one line per failed login
    assert failures[0] == (
        f"login failed: username='otto' client={HERE} failures: 1 of 10 for this username from this client, "
        "1 of 50 from this client"
    )
    assert failures[-1].startswith(f"login failed: username='otto' client={HERE} failures: 10 of 10")
    assert "; locked out until " in failures[-1]
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("login refused")]
    assert len(refusals) == 1 and f"username='otto' client={HERE} locked out until" in refusals[0]
    assert all("\n" not in m for m in failures + refusals)


def test_another_user_still_logs_in_from_the_locked_client(throttle, operator, viewer):
    for i in range(10):
        _login(Client(), f"wrong-{i}")
    assert _locked(_login(Client(), RIGHT))
    assert _logged_in(_login(Client(), "a-long-viewer-pass", username="vera"))


def test_the_lock_ends_after_the_configured_time(throttle, operator):
    throttle.MESHBOARD_LOGIN_LOCKOUT_SECONDS = 2
    for i in range(10):
        _login(Client(), f"wrong-{i}")
    assert _locked(_login(Client(), RIGHT))
    time.sleep(2.2)
    assert _logged_in(_login(Client(), RIGHT))


def test_a_right_password_forgets_that_pairs_failures(throttle, operator):
    for i in range(9):
        _login(Client(), f"wrong-{i}")
    assert _logged_in(_login(Client(), RIGHT))
    for i in range(9):
        assert not _locked(_login(Client(), f"wrong-again-{i}"))
    assert _logged_in(_login(Client(), RIGHT))


def test_a_client_spraying_many_usernames_is_locked_out_altogether(throttle, operator, viewer, caplog):
    throttle.MESHBOARD_LOGIN_CLIENT_FAILURES = 5
    for i in range(5):
        _login(Client(), "guess", username=f"user{i}")  # one failure per username: no pair reaches 10

    refused = _login(Client(), RIGHT)
    assert _locked(refused) and "Too many failed logins from your address." in refused.content.decode()
    assert _locked(_login(Client(), "a-long-viewer-pass", username="vera"))
    assert _logged_in(_login(Client(), RIGHT, addr=ELSEWHERE))
    assert "every username from this client" in caplog.text


def test_usernames_differing_in_case_share_a_count(throttle, operator):
    for i in range(10):
        _login(Client(), f"wrong-{i}", username="OTTO" if i % 2 else "otto")
    assert _locked(_login(Client(), RIGHT))


def test_the_admin_login_is_throttled_the_same_way(throttle, operator):
    operator.is_staff = True
    operator.save()
    for i in range(10):
        _login(Client(), f"wrong-{i}", url=ADMIN_LOGIN)
    refused = _login(Client(), RIGHT, url=ADMIN_LOGIN)
    assert refused.status_code == 200 and "Too many failed logins for this username" in refused.content.decode()
    assert _locked(_login(Client(), RIGHT))  # one count for both forms
    assert _logged_in(_login(Client(), RIGHT, url=ADMIN_LOGIN, addr=ELSEWHERE))


def test_it_ignores_x_forwarded_for_unless_proxies_are_trusted(throttle, operator):
    for i in range(10):  # an attacker rotating a header it chose itself
        _login(Client(), f"wrong-{i}", HTTP_X_FORWARDED_FOR=f"10.9.9.{i}")
    assert _locked(_login(Client(), RIGHT, HTTP_X_FORWARDED_FOR="10.9.9.200"))


def test_behind_a_trusted_proxy_it_counts_the_address_the_proxy_saw(throttle, operator):
    throttle.MESHBOARD_TRUSTED_PROXIES = 1
    proxy = "10.0.0.5"
    for i in range(10):  # the client prepends made-up addresses; the proxy appends the real one
        _login(Client(), f"wrong-{i}", addr=proxy, HTTP_X_FORWARDED_FOR=f"10.9.9.{i}, {HERE}")
    assert _locked(_login(Client(), RIGHT, addr=proxy, HTTP_X_FORWARDED_FOR=HERE))
    # Another user behind the same proxy is not the locked client.
    assert _logged_in(_login(Client(), RIGHT, addr=proxy, HTTP_X_FORWARDED_FOR=f"{HERE}, {ELSEWHERE}"))


def test_without_redis_it_counts_in_the_process_and_never_locks_everyone_out(
    settings, operator, caplog, db, monkeypatch
):
    from apps.core import login_throttle
    from tests.conftest import free_port

    # The warning is said once a minute per process: another test in this process may just have said it.
    monkeypatch.setattr(login_throttle, "_fallback_logged", float("-inf"))
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.MESHBOARD_LOGIN_LOCKOUT_SECONDS = 900
    addr = "192.0.2.77"  # its own address: the in-process counts outlive this test
    assert _logged_in(_login(Client(), RIGHT, addr=addr))
    for i in range(10):
        _login(Client(), f"wrong-{i}", addr=addr)
    assert _locked(_login(Client(), RIGHT, addr=addr))
    assert _logged_in(_login(Client(), RIGHT, addr="192.0.2.78"))
    assert "login throttle: Redis unreachable" in caplog.text


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.7", "", 0, "203.0.113.7"),
        ("203.0.113.7", "1.2.3.4", 0, "203.0.113.7"),
        ("10.0.0.5", "1.2.3.4, 203.0.113.7", 1, "203.0.113.7"),
        ("10.0.0.5", "1.2.3.4, 203.0.113.7, 10.0.0.9", 2, "203.0.113.7"),
        ("10.0.0.5", "", 1, "10.0.0.5"),
        ("10.0.0.5", "not-an-address", 1, "10.0.0.5"),
        ("2001:db8:1:2:3:4:5:6", "", 0, "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "", 0, "203.0.113.7"),
    ],
)
def test_client_address(settings, remote, forwarded, trusted, expected):
    settings.MESHBOARD_TRUSTED_PROXIES = trusted
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected
