"""What protocol OSM gives a Service port, so pages show HTTP KPIs only where Envoy can measure HTTP."""

from __future__ import annotations

from collections.abc import Iterable

HTTP = "http"
TCP = "tcp"


def osm_port_protocol(port: dict) -> str:
    """OSM 1.2 reads a Service port's `appProtocol` (tcp, tcp-server-first, http, grpc) and takes http without one."""
    app = str(port.get("appProtocol") or "").lower()
    return TCP if app.startswith("tcp") else HTTP


def serves_http(ports: Iterable[dict]) -> bool:
    """Some port gets OSM's HTTP filters (a Service without ports has nothing to measure: False)."""
    return any(isinstance(p, dict) and osm_port_protocol(p) == HTTP for p in ports)
