"""Internal addresses (API servers, Prometheus, Redis) are for operators: no viewer's page carries one.

The gateways' reasons name the address they failed to reach, which is what an operator needs to act, and those
reasons travel far: run records and warnings (Mesh page), audit records (/splits/audit/), chart errors (a service's
series). Templates show operators the raw reason where they can (banners), but one missed `{% if %}` would hand the
network layout to every viewer. So this middleware is the one place that enforces it: in every HTML or JSON answer
to a signed-in user who is not an operator, each known internal address is replaced by INTERNAL.

Known addresses: each cluster's Prometheus URL (and its host:port), the API servers of each cluster's kubeconfig
(every `clusters[].cluster.server` in the file, read again when the file changes) or the in-cluster service address,
and REDIS_URL's host. A bare host name without a port or a dot (`http://prometheus`) is hidden only with its scheme:
hiding the word itself would garble ordinary text.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import yaml
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from .models import Cluster
from .roles import can_change_weights

INTERNAL = "[internal address: operators only]"
_TEXT_TYPES = ("text/html", "application/json")

_kubeconfig_cache: dict[str, tuple[float, tuple[str, ...]]] = {}
_cache_lock = threading.Lock()


def _kubeconfig_servers(path: str) -> tuple[str, ...]:
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return ()
    with _cache_lock:
        cached = _kubeconfig_cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except (OSError, ValueError, yaml.YAMLError):
        return ()
    servers = []
    entries = doc.get("clusters") if isinstance(doc, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        server = (entry.get("cluster") or {}).get("server") if isinstance(entry, dict) else None
        if isinstance(server, str) and server:
            servers.append(server.rstrip("/"))
    with _cache_lock:
        _kubeconfig_cache[path] = (mtime, tuple(servers))
    return tuple(servers)


def _forms(url: str) -> Iterable[str]:
    """The ways a message may spell one URL: whole, and its network location when that cannot be an ordinary word."""
    url = url.strip().rstrip("/")
    if not url:
        return
    parts = urlsplit(url if "//" in url else f"//{url}")
    if parts.scheme and parts.netloc:
        yield f"{parts.scheme}://{parts.netloc}"
    if ":" in parts.netloc or "." in parts.netloc:
        yield parts.netloc
    elif not parts.scheme and parts.netloc:
        return
    if parts.hostname and parts.port:
        # urllib3's words for a connection that failed: HTTPConnection(host='10.0.0.5', port=9090), as JSON carries
        # them and as a template escapes them.
        yield f"host='{parts.hostname}', port={parts.port}"
        yield f"host=&#x27;{parts.hostname}&#x27;, port={parts.port}"


def internal_addresses() -> list[str]:
    """Every internal address this deployment knows, longest first (so a URL goes before its own host:port)."""
    urls: list[str] = []
    for prometheus_url, kubeconfig_path, in_cluster in Cluster.objects.values_list(
        "prometheus_url", "kubeconfig_path", "in_cluster"
    ):
        urls.append(prometheus_url or "")
        if in_cluster:
            host, port = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "")
            if host:
                urls.append(f"https://{host}:{port}" if port else f"https://{host}")
        elif kubeconfig_path:
            urls.extend(_kubeconfig_servers(kubeconfig_path))
    redis = urlsplit(settings.REDIS_URL)
    if redis.hostname and redis.port:
        urls.append(f"{redis.hostname}:{redis.port}")
    found = {form for url in urls for form in _forms(url)}
    return sorted(found, key=len, reverse=True)


def hide(text: str, addresses: Iterable[str]) -> str:
    for address in addresses:
        text = text.replace(address, INTERNAL)
    return text


class HideInternalAddressesMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if (
            getattr(response, "streaming", False)
            or not getattr(user, "is_authenticated", False)
            or can_change_weights(user)
            or not response.get("Content-Type", "").startswith(_TEXT_TYPES)
        ):
            return response
        charset = response.charset or "utf-8"
        try:
            text = response.content.decode(charset)
        except UnicodeDecodeError:
            return response
        hidden = hide(text, internal_addresses())
        if hidden != text:
            response.content = hidden.encode(charset)
            if response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
        return response
