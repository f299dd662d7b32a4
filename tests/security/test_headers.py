"""Security headers on pages and static files alike, and the CSP report endpoint (django-csp + apps/core/csp.py)."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from tests.browser_fixtures import login

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
POLICY_PARTS = (
    "default-src 'self'",
    "script-src 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
    "report-uri /csp-report",
)


def _assert_headers(response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers.get(name))
    policy = response.headers["Content-Security-Policy"]
    for part in POLICY_PARTS:
        assert part in policy, policy
    assert "unsafe-eval" not in policy and "script-src 'self' 'unsafe-inline'" not in policy


@pytest.mark.parametrize(
    "path", ["/static/css/meshboard.css", "/static/js/meshboard.js", "/static/vendor/plotly/plotly-strict.min.js"]
)
def test_static_files_get_the_same_headers_as_pages(client, path):
    response = client.get(path)
    assert response.status_code == 200, path
    _assert_headers(response)


def test_pages_get_the_headers(client, viewer):
    _assert_headers(client.get("/accounts/login/"))
    client.force_login(viewer)
    _assert_headers(client.get("/healthz"))


def test_it_logs_each_reported_violation_on_one_line(db, caplog):
    caplog.set_level(logging.WARNING, logger="apps.core.csp")
    client = Client(enforce_csrf_checks=True)  # browsers send no CSRF token, and no session either
    report = {
        "csp-report": {
            "document-uri": "http://meshboard.example/services/bookstore/bookstore/",
            "violated-directive": "script-src-elem",
            "effective-directive": "script-src-elem",
            "blocked-uri": "inline",
            "line-number": 12,
            "disposition": "enforce",
            "script-sample": "alert(1)\nlogin failed: username='forged'",
        }
    }
    response = client.post("/csp-report", json.dumps(report), content_type="application/csp-report")
    assert response.status_code == 204
    [line] = [r.getMessage() for r in caplog.records if r.name == "apps.core.csp"]
    assert line.startswith("csp violation: document='http://meshboard.example/services/bookstore/bookstore/' ")
    assert "directive='script-src-elem' blocked='inline' line='12'" in line
    assert "\n" not in line  # a newline in a report cannot forge a log line

    reports_api = [
        {
            "type": "csp-violation",
            "body": {"documentURL": "http://x/", "effectiveDirective": "img-src", "blockedURL": "http://evil/"},
        }
    ]
    client.post("/csp-report", json.dumps(reports_api), content_type="application/reports+json")
    assert "directive='img-src' blocked='http://evil/'" in caplog.records[-1].getMessage()


def test_the_report_endpoint_refuses_what_is_no_report(db):
    client = Client()
    assert client.get("/csp-report").status_code == 405
    assert client.post("/csp-report", "not json", content_type="application/csp-report").status_code == 400
    big = json.dumps({"csp-report": {"blocked-uri": "x" * 70_000}})
    assert client.post("/csp-report", big, content_type="application/csp-report").status_code == 413


def test_a_browser_reports_a_blocked_inline_script(page, live_server, viewer, caplog):
    caplog.set_level(logging.WARNING, logger="apps.core.csp")
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    ran = page.evaluate(
        """() => { window.injected = false; const s = document.createElement('script');
        s.textContent = 'window.injected = true'; document.body.appendChild(s); return window.injected; }"""
    )
    assert ran is False  # the policy blocked it

    page.wait_for_timeout(100)
    deadline = 50
    while deadline and not any(r.name == "apps.core.csp" for r in caplog.records):
        page.wait_for_timeout(100)
        deadline -= 1
    lines = [r.getMessage() for r in caplog.records if r.name == "apps.core.csp"]
    assert lines, "no violation report reached /csp-report"
    assert f"document='{live_server.url}/" in lines[0] and "script-src" in lines[0]
