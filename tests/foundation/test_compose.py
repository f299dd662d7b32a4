"""docker-compose.yml cannot be run here (no container engine), so its structure is checked as data."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


APP_SERVICES = ("web", "worker-cluster", "worker-metrics", "beat")


def test_it_defines_the_services_with_healthchecks() -> None:
    services = _compose()["services"]
    assert set(services) == {*APP_SERVICES, "redis", "postgres"}
    for name, service in services.items():
        check = service.get("healthcheck", {}).get("test")
        assert check and check[0] in {"CMD", "CMD-SHELL"}, f"{name} has no usable healthcheck"


def test_its_healthchecks_ask_readiness_and_heartbeats() -> None:
    services = _compose()["services"]
    check = {name: " ".join(services[name]["healthcheck"]["test"][1:]) for name in APP_SERVICES}
    assert "/readyz" in check["web"]
    assert check["beat"] == "python manage.py check_heartbeat beat"  # not `test -f`, true after beat died
    assert check["worker-cluster"] == "python manage.py check_heartbeat worker cluster@$$HOSTNAME cluster"
    assert check["worker-metrics"] == "python manage.py check_heartbeat worker metrics@$$HOSTNAME metrics"


def test_it_runs_one_worker_per_collection_queue() -> None:
    from django.conf import settings

    services = _compose()["services"]
    consumed = {}
    for name in ("worker-cluster", "worker-metrics"):
        match = re.search(r" -Q (\S+) -n (\w+)@%h", services[name]["command"])
        assert match, services[name]["command"]
        consumed[name] = set(match.group(1).split(","))
        assert match.group(2) == name.removeprefix("worker-")  # the name the healthcheck asks about
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert consumed == {"worker-cluster": {"cluster", "tick"}, "worker-metrics": {"metrics", "tick"}}
    assert set().union(*consumed.values()) == routed  # every routed queue has a consumer


def test_it_reuses_one_image_for_web_worker_and_beat() -> None:
    services = _compose()["services"]
    app_services = [services[name] for name in APP_SERVICES]
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
    assert re.match(r"celery -A meshboard worker\b", services["worker-cluster"]["command"])
    assert re.match(r"celery -A meshboard worker\b", services["worker-metrics"]["command"])
    assert re.match(r"celery -A meshboard beat\b", services["beat"]["command"])
    assert (ROOT / "meshboard" / "wsgi.py").exists()


def test_it_builds_from_a_dockerfile_that_copies_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M), "the image must run the Python the project targets"
    for part in ("meshboard", "apps", "lab", "templates", "static", "manage.py", "pyproject.toml"):
        assert re.search(rf"^COPY {re.escape(part)}\b", dockerfile, re.M), f"Dockerfile does not copy {part}"
    assert "collectstatic" in dockerfile


def test_it_publishes_web_on_loopback_only_by_default() -> None:
    services = _compose()["services"]
    assert services["web"]["ports"] == ["${MESHBOARD_BIND_ADDRESS:-127.0.0.1}:${MESHBOARD_PORT:-8000}:8000"]
    assert not any(services[name].get("ports") for name in services if name != "web")
    text = (ROOT / "docker-compose.yml").read_text()
    assert "TLS-terminating proxy" in text and "MESHBOARD_HTTPS=1" in text  # how to publish it properly


def test_it_has_no_default_database_password() -> None:
    services = _compose()["services"]
    required = re.compile(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}")
    assert required.fullmatch(services["postgres"]["environment"]["POSTGRES_PASSWORD"])
    for name in APP_SERVICES:
        assert required.search(services[name]["environment"]["DATABASE_URL"]), name
    assert "meshboard}@" not in (ROOT / "docker-compose.yml").read_text()  # no ${...:-meshboard} fallback


def test_it_mounts_only_the_kubeconfig_file_read_only_where_the_api_is_called() -> None:
    services = _compose()["services"]
    for name in APP_SERVICES:
        volumes = services[name].get("volumes") or []
        if name in {"web", "worker-cluster"}:  # the weight write; the cluster collection
            [mount] = volumes
            assert mount["type"] == "bind" and mount["read_only"] is True
            assert mount["target"] == "/config/kubeconfig"
            assert mount["source"].startswith("${MESHBOARD_KUBECONFIG:?")  # a file that must be named
            assert mount["bind"]["create_host_path"] is False  # a missing file is an error, not a new folder
            assert services[name]["user"] == "${MESHBOARD_UID:-1000}:${MESHBOARD_GID:-1000}"
        else:
            assert volumes == [], f"{name} does not call the Kubernetes API"
    assert "KUBECONFIG_DIR" not in (ROOT / "docker-compose.yml").read_text()  # no whole folder any more
