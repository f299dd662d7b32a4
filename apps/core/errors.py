"""The one error family of the gateways to outside systems (the Kubernetes API, Prometheus).

Every failure a gateway sees becomes a `GatewayError` with a `reason` a person can act on, the HTTP `status` when
there was one, and `transient`: worth retrying (unreachable, timeout, 429, 5xx) or not (a person must act: 401, 403,
a bad URL, a query the server rejects). Tasks retry on `transient` alone; run records keep `reason`.
"""

from __future__ import annotations


class GatewayError(Exception):
    transient = False

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
