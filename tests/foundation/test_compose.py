"""docker-compose.yml cannot be run here (no container engine), so its structure is checked as data."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_it_defines_the_five_services_with_healthchecks() -> None:
    services = _compose()["services"]
    assert set(services) == {"web", "worker", "beat", "redis", "postgres"}
    for name, service in services.items():
        check = service.get("healthcheck", {}).get("test")
        assert check and check[0] in {"CMD", "CMD-SHELL"}, f"{name} has no usable healthcheck"


def test_it_reuses_one_image_for_web_worker_and_beat() -> None:
    services = _compose()["services"]
    app_services = [services[name] for name in ("web", "worker", "beat")]
    assert {s["image"] for s in app_services} == {"meshboard:latest"}
    assert all(s["build"] == "." for s in app_services)
    for s in app_services:
        assert s["environment"]["DATABASE_URL"].startswith("postgres://")
        assert s["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert s["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert s["depends_on"]["redis"]["condition"] == "service_healthy"


def test_it_runs_the_commands_the_project_has() -> None:
    services = _compose()["services"]
    assert "meshboard.wsgi:application" in services["web"]["command"]
    assert "migrate" in services["web"]["command"]
    assert re.match(r"celery -A meshboard worker\b", services["worker"]["command"])
    assert re.match(r"celery -A meshboard beat\b", services["beat"]["command"])
    assert (ROOT / "meshboard" / "wsgi.py").exists()


def test_it_builds_from_a_dockerfile_that_copies_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M), "the image must run the Python the project targets"
    for part in ("meshboard", "apps", "lab", "templates", "static", "manage.py", "pyproject.toml"):
        assert re.search(rf"^COPY {re.escape(part)}\b", dockerfile, re.M), f"Dockerfile does not copy {part}"
    assert "collectstatic" in dockerfile
