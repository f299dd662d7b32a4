"""Like with like: Meshboard's per-edge class-2 and non-2 rates, computed with irate(...[1m]) by the catalog's batched
expression, equal what OSM's own service-to-service dashboard expressions give on the same Prometheus at one time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.metrics import catalog
from apps.metrics.prometheus import PrometheusGateway

from .conftest import AT, NS

# A verbatim copy of osm-data/grafana-dashboards-v1.2.4/promql-extract.json (OSM v1.2.4's dashboards, Apache-2.0).
EXTRACT = Path(__file__).resolve().parent / "data" / "osm-v1.2.4-promql-extract.json"


def _dashboard(uid: str) -> dict:
    return next(d for d in json.loads(EXTRACT.read_text())["dashboards"] if d["uid"] == uid)


def _substitute(expr: str, variables: dict[str, str]) -> str:
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(f"${name}", value)
    return expr


def test_it_matches_osm_service_to_service_dashboard_rates(proms):
    board = _dashboard("OSMServiceToServiceMetrics")
    panels = {p["panel"]: p["expr"] for p in board["panels"]}
    destinations_query = next(v["query"] for v in board["variables"] if v["name"] == "destination_service")
    gateway = PrometheusGateway(proms.byo.url)

    # Meshboard's batched expression, with the dashboard's function and window.
    ours: dict[tuple[str, str, str], dict[str, float]] = {}
    for s in gateway.instant(catalog.requests_by_class("1m", fn="irate"), AT):
        key = (s.labels["source_namespace"], s.labels["source_service"], s.labels["envoy_cluster_name"])
        ours.setdefault(key, {})[s.labels["envoy_response_code_class"]] = s.value

    # The dashboard's variables, as Grafana would fill them: label_values(selector, envoy_cluster_name).
    variables = {"source_namespace": NS, "source_service": "frontend"}
    selector = _substitute(destinations_query, variables).removeprefix("label_values(").rsplit(",", 1)[0]
    destinations = sorted({s.labels["envoy_cluster_name"] for s in gateway.instant(selector, AT)})
    compared = 0
    for destination in destinations:
        values = {**variables, "destination_service": destination}
        success = gateway.instant(_substitute(panels["Success Count"], values), AT)
        failure = gateway.instant(_substitute(panels["Failure Count"], values), AT)
        if not success and not failure:
            continue  # a TCP destination: no request series on either side
        mine = ours[(NS, "frontend", destination)]
        assert sum(s.value for s in success) == pytest.approx(mine.get("2", 0.0), rel=1e-9)
        failures = sum(v for cls, v in mine.items() if cls != "2")
        assert sum(s.value for s in failure) == pytest.approx(failures, rel=1e-9)
        compared += 1
    assert compared >= 5
    gateway.close()
