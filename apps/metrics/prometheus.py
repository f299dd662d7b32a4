"""The gateway to a cluster's Prometheus: the only module that touches `prometheus-api-client` and HTTP.

It owns the client (no hidden retries: the task retries whole runs), the timeouts of every call, a count of the calls
made, and the mapping of every failure to `TransientPrometheusError` (worth retrying: unreachable, timeout, 5xx, 429,
a query that timed out inside Prometheus) or `PermanentPrometheusError` (a person must act: bad URL, 4xx, a query
Prometheus rejects, an answer that is not the Prometheus API). Each error has a `reason` a person can read.
Results come back as plain data: `Sample(labels, value)` and `RangeSeries(labels, points)`, with NaN and ±Inf
already turned into None so nothing downstream can store a NaN.

Reaching a secured Prometheus: a CA bundle for its certificate (`ca_file`), basic auth (`basic_auth`: the password
read by `gateway_for` from a file or an environment variable, never from the database), or a bearer token read from
a file (`bearer_token_file`) and read again whenever the file changes, so a rotated token (a projected
service-account token, an Entra ID token for Azure Monitor's managed Prometheus) is used without a restart. A 401,
403 or TLS failure says which credential or CA was used and what to fix.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlparse

import orjson
import requests
import requests.auth
import yaml
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from apps.clusters.tls import tls_problem
from apps.core.errors import GatewayError

DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_READ_TIMEOUT = 20.0
# Prometheus's own default when a config sets no scrape_interval.
PROMETHEUS_DEFAULT_SCRAPE_INTERVAL = 60.0


class PrometheusError(GatewayError):
    """A call to Prometheus failed. `reason` is a sentence a person can act on."""


class TransientPrometheusError(PrometheusError):
    transient = True


class PermanentPrometheusError(PrometheusError):
    pass


class Sample(NamedTuple):
    # A tuple, not a frozen dataclass: the cycle builds ~35,000 at 1,000 services, and a frozen dataclass's
    # __init__ (object.__setattr__ per field) took twice as long (BENCHMARKS.md, "2026-12-01 (night)").
    labels: dict[str, str]
    value: float | None  # None: NaN or ±Inf (e.g. a ratio of 0/0, a quantile of an empty histogram)


@dataclass(frozen=True)
class RangeSeries:
    labels: dict[str, str]
    points: list[tuple[float, float | None]]  # (unix seconds, value or None), oldest first


def to_float(raw: object) -> float | None:
    """Prometheus's string value as a finite float, else None ("NaN", "+Inf", "-Inf", junk)."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def parse_duration(text: str) -> float:
    """A Prometheus duration (`15s`, `1m30s`, `1h`, `500ms`) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", str(text).strip())
    if not parts or "".join(n + u for n, u in parts) != str(text).strip():
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


_STATUS_RE = re.compile(r"HTTP Status Code (\d+) \((.*)\)\s*$", re.DOTALL)


def _client_error(exc: PrometheusApiClientException, what: str, host: str, sent: str = "") -> PrometheusError:
    """The client raises one exception type with the status and body in its message; recover both. `sent`: the
    credential the gateway sent, as words (for a 401 or 403)."""
    match = _STATUS_RE.search(str(exc))
    status = int(match.group(1)) if match else 0
    body = match.group(2) if match else str(exc)
    detail = body
    found = re.search(r'"error"\s*:\s*"((?:[^"\\]|\\.)*)"', body)
    if found:
        detail = found.group(1).replace('\\"', '"')
    detail = detail[:300]
    if status in (400, 422) and "timeout" not in detail.lower() and "timed out" not in detail.lower():
        return PermanentPrometheusError(
            f"{what}: Prometheus at {host} rejected the query ({status}): {detail}", status=status
        )
    if status in (401, 403) and sent:
        advice = (
            "check that credential against what Prometheus (its web config) or the proxy in front expects"
            if status == 401
            else "the credential is known but may not read metrics: check the proxy's or workspace's access rules "
            "(on Azure Monitor, the identity needs Monitoring Data Reader on the workspace)"
        )
        return PermanentPrometheusError(
            f"{what}: Prometheus at {host} refused access ({status}) to {sent}: {advice}", status=status
        )
    if status in (401, 403):
        return PermanentPrometheusError(
            f"{what}: Prometheus at {host} refused access ({status}) and Meshboard sent no credentials: give the "
            "cluster a Prometheus user and password or a bearer token file (add_cluster --prometheus-username with "
            "--prometheus-password-file, or --prometheus-bearer-token-file)",
            status=status,
        )
    if status == 404:
        return PermanentPrometheusError(
            f"{what}: no Prometheus API at {host} (404); check the cluster's Prometheus URL", status=404
        )
    if status in (408, 422, 429) or status >= 500:
        return TransientPrometheusError(f"{what}: Prometheus at {host} answered {status}: {detail}", status=status)
    return PermanentPrometheusError(
        f"{what}: Prometheus at {host} answered {status or 'an error'}: {detail}", status=status
    )


class BearerTokenFile(requests.auth.AuthBase):
    """`Authorization: Bearer <the file's content>`, the file read again whenever it changes (inode, size or
    modification time: kubelet rotates a projected token by swapping a symlink, other writers rewrite in place).
    The content is cached per path for the process, so a stat is all a request costs while the token holds."""

    _cache: dict[str, tuple[tuple[int, int, int], str, float]] = {}
    _lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path

    def token(self) -> str:
        try:
            st = os.stat(self.path)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            with self._lock:
                cached = self._cache.get(self.path)
            if cached is not None and cached[0] == key:
                return cached[1]
            with open(self.path, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise PermanentPrometheusError(
                f"the Prometheus bearer token file {self.path} cannot be read ({exc.__class__.__name__}: "
                f"{getattr(exc, 'strerror', None) or exc}); check the path and that the workers may read it"
            ) from None
        if not token:
            raise PermanentPrometheusError(f"the Prometheus bearer token file {self.path} is empty")
        with self._lock:
            self._cache[self.path] = (key, token, time.time())
        return token

    def describe(self) -> str:
        with self._lock:
            cached = self._cache.get(self.path)
        when = f", read {max(0, int(time.time() - cached[2]))} s ago" if cached else ""
        return f"the bearer token from {self.path}{when}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request


class PrometheusGateway:
    """One Prometheus, with a timeout on every call and a count of the calls made (`requests`).

    `ca_file`: the CA bundle that signs its certificate (default: the system's). `basic_auth`: (user, password,
    where the password came from). `bearer_token_file`: a file holding a bearer token. `headers`: sent as given."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        headers: dict[str, str] | None = None,
        ca_file: str = "",
        basic_auth: tuple[str, str, str] | None = None,
        bearer_token_file: str = "",
    ) -> None:
        if not url:
            raise PermanentPrometheusError("this cluster has no Prometheus URL")
        self.url = url.rstrip("/")
        self.host = urlparse(self.url).netloc or self.url
        self.timeout = (connect_timeout, read_timeout)
        self.requests = 0
        self._count_lock = threading.Lock()
        self.ca_file = ca_file
        self._session = requests.Session()
        self._session.headers.update(headers or {})
        if ca_file:
            self._session.verify = ca_file
        self._bearer: BearerTokenFile | None = None
        if basic_auth is not None:
            user, password, source = basic_auth
            self._session.auth = (user, password)
            self.credential = f"the basic-auth user {user!r} (password from {source})"
        elif bearer_token_file:
            self._bearer = BearerTokenFile(bearer_token_file)
            self._session.auth = self._bearer
            self.credential = f"the bearer token from {bearer_token_file}"
        elif any(k.lower() == "authorization" for k in (headers or {})):
            self.credential = "the Authorization header configured"
        elif urlparse(self.url).password is not None:
            self.credential = "the user and password in the URL"
        else:
            self.credential = ""
        # No retries inside the client: a slow Prometheus must cost one timeout, not four, and the task retries runs.
        self._client = PrometheusConnect(
            url=self.url, retry=Retry(total=0, raise_on_status=False), session=self._session, timeout=self.timeout
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PrometheusGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sent(self) -> str:
        if self._bearer is not None:
            return self._bearer.describe()
        return self.credential

    def _call(self, what: str, fn, *args, **kwargs):
        with self._count_lock:  # a metrics cycle asks from several threads
            self.requests += 1
        try:
            return fn(*args, **kwargs)
        except PrometheusApiClientException as exc:
            raise _client_error(exc, what, self.host, self._sent()) from None
        except requests.exceptions.SSLError as exc:
            ca = f"the CA bundle {self.ca_file}" if self.ca_file else "the system's CA bundle"
            name_fix = "Use a name the certificate holds in the cluster's Prometheus URL."
            problem = tls_problem(str(exc), "Prometheus", self.host, ca_source=ca, name_fix=name_fix)
            if ca.startswith("the system") and "CA in" in problem:
                problem += " Give the cluster a CA file for Prometheus (add_cluster --prometheus-ca-file)."
            raise PermanentPrometheusError(f"{what}: {problem}") from None
        except requests.exceptions.ConnectionError as exc:
            cause = exc.args[0] if exc.args else exc
            cause = getattr(cause, "reason", None) or cause
            # With retries off, urllib3 wraps a read timeout in MaxRetryError and requests calls it a ConnectionError.
            if isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(cause).lower():
                raise TransientPrometheusError(
                    f"{what}: Prometheus at {self.host} did not answer within {self.timeout[1]:g} s"
                ) from None
            raise TransientPrometheusError(f"{what}: cannot reach Prometheus at {self.host}: {cause}") from None
        except requests.exceptions.Timeout:
            raise TransientPrometheusError(
                f"{what}: Prometheus at {self.host} did not answer within {self.timeout[1]:g} s"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransientPrometheusError(f"{what}: request to Prometheus at {self.host} failed: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentPrometheusError(
                f"{what}: {self.host} answered something that is not the Prometheus API ({exc.__class__.__name__})"
            ) from None

    def _get_json(self, path: str, what: str, params: dict[str, str] | None = None) -> Any:
        def fetch() -> Any:
            # verify given per request: requests lets REQUESTS_CA_BUNDLE override the session's own (psf/requests#3829)
            response = self._session.get(
                f"{self.url}{path}", params=params, timeout=self.timeout, verify=self._session.verify
            )
            if response.status_code != 200:
                raise PrometheusApiClientException(f"HTTP Status Code {response.status_code} ({response.content!r})")
            # orjson, not the client's json: the cycle's latency bucket answer is ~9 MB at 1,000 services, and its
            # decoding sits on the cycle's critical path. A 200 that is not JSON (a proxy's sign-in page) raises a
            # ValueError: not the Prometheus API, for a person to fix (requests' .json() made it a transient error).
            return orjson.loads(response.content)["data"]

        return self._call(what, fetch)

    # -- queries ------------------------------------------------------------------------------------------------

    def instant(self, expr: str, at: float | None = None, *, what: str = "query") -> list[Sample]:
        """Evaluate `expr` at unix time `at` (default: Prometheus's now). Only instant vectors are expected."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        # The client's custom_query with our decoding (_get_json): the same GET /api/v1/query, the same errors.
        data = self._get_json("/api/v1/query", what, params)
        try:
            result = data["result"]
            # Each answer's label dicts are fresh from the decoder: kept as they are, not copied.
            samples = [Sample(item.get("metric") or {}, to_float(item["value"][1])) for item in result]
            if not all(type(sample.labels) is dict for sample in samples):
                raise TypeError("labels that are not an object")
            return samples
        except (KeyError, IndexError, TypeError, AttributeError):
            raise PermanentPrometheusError(f"{what}: Prometheus at {self.host} answered an unexpected shape") from None

    def range(
        self, expr: str, start: float, end: float, step: float, *, what: str = "range query"
    ) -> list[RangeSeries]:
        result = self._call(
            what,
            self._client.custom_query_range,
            expr,
            start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC),
            step=f"{step:g}",
        )
        try:
            return [
                RangeSeries(dict(item.get("metric") or {}), [(float(t), to_float(v)) for t, v in item["values"]])
                for item in result
            ]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise PermanentPrometheusError(f"{what}: Prometheus at {self.host} answered an unexpected shape") from None

    # -- what this Prometheus is --------------------------------------------------------------------------------

    def build_version(self) -> str:
        data = self._get_json("/api/v1/status/buildinfo", "reading Prometheus's version")
        return str((data or {}).get("version", ""))[:64]

    def scrape_interval(self, job: str = "kubernetes-pods") -> float:
        """The scrape interval of `job` (OSM's sidecar job) from /api/v1/status/config, else the global one."""
        data = self._get_json("/api/v1/status/config", "reading Prometheus's configuration")
        try:
            config = yaml.safe_load((data or {}).get("yaml", "")) or {}
        except yaml.YAMLError:
            raise PermanentPrometheusError(
                f"Prometheus at {self.host} returned a configuration we cannot read"
            ) from None
        interval = (config.get("global") or {}).get("scrape_interval")
        for scrape in config.get("scrape_configs") or []:
            if scrape.get("job_name") == job and scrape.get("scrape_interval"):
                interval = scrape["scrape_interval"]
        try:
            return parse_duration(interval) if interval else PROMETHEUS_DEFAULT_SCRAPE_INTERVAL
        except ValueError:
            return PROMETHEUS_DEFAULT_SCRAPE_INTERVAL

    def metric_names(self, start: float, end: float) -> set[str]:
        """Names of the metrics with samples between `start` and `end` (read from the index, cheap)."""
        params = {"start": f"{start:.3f}", "end": f"{end:.3f}"}
        names = self._call("listing metric names", self._client.get_label_values, label_name="__name__", params=params)
        return {str(n) for n in names or []}

    def label_names(self, start: float, end: float, match: str) -> set[str]:
        """Names of the labels on the series `match` selects between `start` and `end` (/api/v1/labels with
        match[], read from the index: one request, whatever the number of series)."""
        query = urlencode({"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        data = self._get_json(f"/api/v1/labels?{query}", "listing label names")
        if not isinstance(data, list):
            raise PermanentPrometheusError(
                f"listing label names: Prometheus at {self.host} answered an unexpected shape"
            )
        return {str(n) for n in data}


def basic_auth_of(cluster: Any) -> tuple[str, str, str] | None:
    """(user, password, where the password came from) for a cluster with a Prometheus user; the password is read
    now from its file or environment variable (never stored in the database)."""
    user = getattr(cluster, "prometheus_username", "")
    if not user:
        return None
    path = getattr(cluster, "prometheus_password_file", "")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise PermanentPrometheusError(
                f"the Prometheus password file {path} cannot be read ({exc.__class__.__name__}: "
                f"{getattr(exc, 'strerror', None) or exc}); check the path and that the workers may read it"
            ) from None
        return user, password, f"the file {path}"
    variable = getattr(cluster, "prometheus_password_env", "")
    password = os.environ.get(variable) if variable else None
    if password is None:
        raise PermanentPrometheusError(
            f"the Prometheus password for user {user!r} is not set: the workers have no environment variable "
            f"{variable or '(none named)'}; set it where the workers start, or use a password file"
        )
    return user, password, f"the environment variable {variable}"


def gateway_for(cluster: Any, *, read_timeout: float | None = None) -> PrometheusGateway:
    """The gateway to `cluster`'s Prometheus, with the timeouts from settings (MESHBOARD_PROMETHEUS_*_TIMEOUT) and
    the cluster's CA file and credentials; `read_timeout` overrides the read timeout (the page path passes what is
    left of its deadline) and then bounds the connect timeout too, so a Prometheus whose address drops packets cannot
    hold a page request past its deadline."""
    from django.conf import settings

    connect = settings.MESHBOARD_PROMETHEUS_CONNECT_TIMEOUT
    return PrometheusGateway(
        cluster.prometheus_url,
        connect_timeout=min(connect, read_timeout) if read_timeout is not None else connect,
        read_timeout=read_timeout if read_timeout is not None else settings.MESHBOARD_PROMETHEUS_READ_TIMEOUT,
        ca_file=getattr(cluster, "prometheus_ca_file", ""),
        basic_auth=basic_auth_of(cluster) if cluster.prometheus_url else None,
        bearer_token_file=getattr(cluster, "prometheus_bearer_token_file", ""),
    )
