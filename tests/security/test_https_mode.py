"""MESHBOARD_HTTPS=1: secure cookies, HSTS, the proxy's scheme header and the redirect; `check --deploy` is clean.

Settings are read once per process, so each case runs Django in a subprocess with the environment it names.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MESHBOARD_", "DJANGO_"))}
    base.pop("DEBUG", None)
    return {
        **base,
        "DJANGO_SETTINGS_MODULE": "meshboard.settings",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "MESHBOARD_VAR_DIR": str(tmp_path),
        "ALLOWED_HOSTS": "meshboard.example.com,127.0.0.1",
        **extra,
    }


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_in_https_mode(tmp_path):
    result = _manage(_env(tmp_path, MESHBOARD_HTTPS="1"), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    # Only the preload reminder is silenced, on purpose (see settings.py); asking for preload needs no silencing.
    assert "(1 silenced)" in result.stdout
    preload = _manage(_env(tmp_path, MESHBOARD_HTTPS="1", MESHBOARD_HSTS_PRELOAD="1"), "check", "--deploy")
    assert "System check identified no issues (0 silenced)" in preload.stdout, preload.stdout + preload.stderr


def test_without_https_mode_check_deploy_names_what_it_would_fix(tmp_path):
    result = _manage(_env(tmp_path), "check", "--deploy")
    for warning in DEPLOY_WARNINGS:
        assert warning in result.stdout + result.stderr


_PROBE = """
import json, django
django.setup()
from django.test import Client
c = Client()
out = {}
r = c.get("/accounts/login/", HTTP_HOST="meshboard.example.com")
out["plain"] = [r.status_code, r.headers.get("Location")]
r = c.get("/healthz", HTTP_HOST="127.0.0.1")
out["healthz"] = r.status_code
r = c.get("/accounts/login/", HTTP_HOST="meshboard.example.com", HTTP_X_FORWARDED_PROTO="https")
out["login"] = [r.status_code, r.headers.get("Strict-Transport-Security"), r.headers.get("Content-Security-Policy")]
out["cookies"] = {k: [v["secure"], v["httponly"], v["samesite"]] for k, v in r.cookies.items()}
r = c.get("/static/css/meshboard.css", HTTP_HOST="meshboard.example.com", HTTP_X_FORWARDED_PROTO="https")
out["static"] = [r.status_code, r.headers.get("Strict-Transport-Security"), r.headers.get("Content-Security-Policy")]
print(json.dumps(out))
"""


def test_https_mode_redirects_sets_hsts_and_secure_host_cookies(tmp_path):
    env = _env(tmp_path, MESHBOARD_HTTPS="1", MESHBOARD_HSTS_SECONDS="3600")
    assert _manage(env, "migrate", "--noinput").returncode == 0
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])

    assert out["plain"] == [301, "https://meshboard.example.com/accounts/login/"]
    assert out["healthz"] == 200  # probes ask over plain HTTP from inside
    status, hsts, csp = out["login"]
    assert status == 200 and hsts == "max-age=3600; includeSubDomains"
    assert "upgrade-insecure-requests" in csp
    # The login page sets the CSRF cookie: Secure, and __Host- so no other host of the domain can plant one.
    assert out["cookies"] == {"__Host-meshboard-csrftoken": [True, "", "Lax"]}
    assert out["static"][:2] == [200, "max-age=3600; includeSubDomains"] and out["static"][2]


def test_without_https_mode_nothing_is_redirected_or_pinned(tmp_path):
    env = _env(tmp_path)
    assert _manage(env, "migrate", "--noinput").returncode == 0
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["plain"] == [200, None]
    assert out["login"][1] is None
    assert out["cookies"] == {"csrftoken": ["", "", "Lax"]}  # not Secure
