"""The gateway to a cluster's Kubernetes API: the only module that touches the `kubernetes` client.

It owns client construction (kubeconfig or in-cluster), timeouts, and the mapping of every failure to
`TransientKubeError` (worth retrying: unreachable, timeout, 429, 5xx) or `PermanentKubeError` (a person must act:
401, 403, bad kubeconfig). Lists are decoded from the raw JSON rather than through the client's pydantic models:
callers want plain dicts, and model decoding of thousands of pods costs more than the HTTP round trip.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from apps.core.errors import GatewayError

# The name Meshboard's writes carry in managedFields, so a read-back can tell them from other writers'.
FIELD_MANAGER = "meshboard"


class KubeError(GatewayError):
    """A Kubernetes API call failed. `reason` is a sentence a person can act on."""


class TransientKubeError(KubeError):
    transient = True


class PermanentKubeError(KubeError):
    pass


class NotFoundKubeError(PermanentKubeError):
    """The object or the resource type does not exist (for a CRD: not installed)."""


class ConflictKubeError(PermanentKubeError):
    """The object changed since it was read (stale resourceVersion)."""


@dataclass(frozen=True)
class KubeTarget:
    kubeconfig_path: str = ""
    context: str = ""
    in_cluster: bool = False


@dataclass(frozen=True)
class Resource:
    """A listable resource type: the REST coordinates plus a short name for logs and counts."""

    key: str
    group: str  # "" for core
    version: str
    plural: str
    namespaced: bool = True


def _describe_status(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
        message = body.get("message") or ""
    except (ValueError, AttributeError):
        message = ""
    return message or (exc.reason or "").strip() or f"HTTP {exc.status}"


@dataclass(frozen=True)
class Access:
    """What one API call asked to do, in RBAC's terms, so a 401 or 403 can say what failed and what to grant.

    `path` is set instead of `plural` for a non-resource URL (discovery: /version, /apis).
    """

    verb: str
    group: str = ""  # "" for the core group
    plural: str = ""
    namespace: str = ""  # "" for all namespaces, or for a cluster-scoped resource
    name: str = ""
    namespaced: bool = True
    path: str = ""
    dry_run: bool = False

    @property
    def resource(self) -> str:
        """The resource as kubectl names it: `pods`, `trafficsplits.split.smi-spec.io`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def what(self) -> str:
        """`patch trafficsplits.split.smi-spec.io "bookstore-split" in namespace bookstore`."""
        if self.path:
            return f"{self.verb} the non-resource URL {self.path}"
        target = f'{self.resource} "{self.name}"' if self.name else self.resource
        if self.namespace:
            where = f" in namespace {self.namespace}"
        elif self.namespaced:
            where = " in all namespaces"
        else:
            where = " (cluster-scoped)"
        return f"{self.verb} {target}{where}"

    def grant(self, user: str) -> str:
        """The RBAC rule that allows this call, where it must live, and how to check it."""
        who = f"Meshboard's identity ({user})" if user else "Meshboard's identity"
        if self.path:
            return (
                f'Grant {who} the verb "{self.verb}" on the non-resource URL {self.path} (a ClusterRole rule '
                f'nonResourceURLs: ["{self.path}"], verbs: ["{self.verb}"]; the built-in system:discovery '
                "ClusterRole grants it to every authenticated identity unless it was changed)."
            )
        rule = f'apiGroups: ["{self.group}"], resources: ["{self.plural}"], verbs: ["{self.verb}"]'
        if self.namespace:
            where = (
                f"a Role in namespace {self.namespace} bound with a RoleBinding there (or a ClusterRole bound in "
                "that namespace)"
            )
        elif self.namespaced:
            where = "a ClusterRole bound with a ClusterRoleBinding (the request spans all namespaces)"
        else:
            where = "a ClusterRole bound with a ClusterRoleBinding (the resource is cluster-scoped)"
        dry = " A server-side dry run needs the same verb as the write." if self.dry_run else ""
        check = f"kubectl auth can-i {self.verb} {self.resource}"
        if self.namespace:
            check += f" -n {self.namespace}"
        elif self.namespaced:
            check += " --all-namespaces"
        if user:
            check += f" --as {user}"
        return f'Grant {who} the verb "{self.verb}" on {self.resource} with {where}: {rule}.{dry} Check: {check}'


_FORBIDDEN_USER = re.compile(r'User "([^"]{1,253})" cannot')


def map_api_exception(exc: ApiException, what: str, access: Access | None = None) -> KubeError:
    status = exc.status or 0
    detail = _describe_status(exc)
    if status == 401:
        failed = f" ({access.what()})" if access else ""
        return PermanentKubeError(
            f"{what}: the API server refused our credentials (401 Unauthorized){failed}: the token or client "
            "certificate in the kubeconfig is missing, expired or revoked. Renew the kubeconfig or token; no RBAC "
            "grant helps until the API server accepts the credentials.",
            status=401,
        )
    if status == 403:
        if access is None:
            advice = "grant Meshboard's identity the verb this call needs on that resource"
        else:
            match = _FORBIDDEN_USER.search(detail)
            advice = f"Meshboard may not {access.what()}. {access.grant(match.group(1) if match else '')}"
        return PermanentKubeError(f"{what}: forbidden by RBAC (403): {detail}. {advice}", status=403)
    if status == 404:
        return NotFoundKubeError(f"{what}: not found (404): {detail}", status=404)
    if status == 409:
        return ConflictKubeError(f"{what}: conflict (409): {detail}", status=409)
    if status == 429 or status >= 500 or status == 0:
        return TransientKubeError(f"{what}: the API server answered {status or 'no status'}: {detail}", status=status)
    return PermanentKubeError(f"{what}: the API server answered {status}: {detail}", status=status)


def _transport_error(exc: Exception, what: str, host: str) -> TransientKubeError:
    text = str(exc)
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError) or "timed out" in text.lower():
        return TransientKubeError(f"{what}: the API server at {host} did not answer in time ({exc.__class__.__name__})")
    cause = getattr(exc, "reason", None) or exc
    return TransientKubeError(f"{what}: cannot reach the API server at {host}: {cause}")


class KubeGateway:
    """One cluster's API, with timeouts on every call and a count of the calls made."""

    def __init__(
        self,
        target: KubeTarget,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 20.0,
    ) -> None:
        self.target = target
        self.timeout = (connect_timeout, read_timeout)
        self.requests = 0
        self._lock = threading.Lock()
        self._api_client = self._build_client(target)
        self.host = self._api_client.configuration.host
        self._core = k8s.CoreV1Api(self._api_client)
        self._custom = k8s.CustomObjectsApi(self._api_client)
        self._version = k8s.VersionApi(self._api_client)
        self._apis = k8s.ApisApi(self._api_client)

    @staticmethod
    def _build_client(target: KubeTarget) -> k8s.ApiClient:
        configuration = k8s.Configuration()
        try:
            if target.in_cluster:
                k8s_config.load_incluster_config(client_configuration=configuration)
            else:
                k8s_config.load_kube_config(
                    config_file=target.kubeconfig_path or None,
                    context=target.context or None,
                    client_configuration=configuration,
                )
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            where = "in-cluster service account" if target.in_cluster else f"kubeconfig {target.kubeconfig_path!r}"
            raise PermanentKubeError(f"cannot load the {where}: {exc}") from None
        # The collector retries whole runs with backoff; urllib3's own retries would only hide an outage longer.
        configuration.retries = False
        return k8s.ApiClient(configuration)

    def close(self) -> None:
        self._api_client.close()

    def __enter__(self) -> KubeGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, access: Access, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.requests += 1
        try:
            return fn(*args, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            raise map_api_exception(exc, what, access) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transport_error(exc, what, self.host) from None

    def _raw_json(self, what: str, access: Access, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        response = self._call(what, access, fn, *args, _preload_content=False, **kwargs)
        try:
            return json.loads(response.data)
        except ValueError as exc:
            raise TransientKubeError(f"{what}: the API server sent a body that is not JSON ({exc})") from None
        finally:
            response.release_conn()

    def version(self) -> dict[str, Any]:
        return self._raw_json("reading the Kubernetes version", Access("get", path="/version"), self._version.get_code)

    def served_groups(self) -> dict[str, list[str]]:
        """API groups the server serves, each with its served versions (preferred first)."""
        body = self._raw_json("reading API discovery", Access("get", path="/apis"), self._apis.get_api_versions)
        groups: dict[str, list[str]] = {}
        for group in body.get("groups") or []:
            preferred = (group.get("preferredVersion") or {}).get("version")
            versions = [v.get("version") for v in group.get("versions") or [] if v.get("version")]
            versions.sort(key=lambda v: v != preferred)
            groups[group.get("name", "")] = versions
        return groups

    def list(self, resource: Resource, namespace: str = "") -> list[dict[str, Any]]:
        """Every object of one resource type in one call: across all namespaces, or in `namespace` only."""
        if namespace and not resource.namespaced:
            raise ValueError(f"{resource.plural} are cluster-scoped: they cannot be listed in a namespace")
        where = f" in namespace {namespace}" if namespace else ""
        what = f"listing {resource.plural}.{resource.group or 'core'}/{resource.version}{where}"
        access = Access("list", resource.group, resource.plural, namespace, namespaced=resource.namespaced)
        if resource.group and namespace:
            body = self._raw_json(
                what,
                access,
                self._custom.list_namespaced_custom_object,
                resource.group,
                resource.version,
                namespace,
                resource.plural,
            )
        elif resource.group:
            body = self._raw_json(
                what, access, self._custom.list_cluster_custom_object, resource.group, resource.version, resource.plural
            )
        else:
            body = self._list_core(what, access, resource, namespace)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise TransientKubeError(f"{what}: the answer is not a List object")
        return body["items"]

    def _list_core(self, what: str, access: Access, resource: Resource, namespace: str) -> Any:
        # CustomObjectsApi builds /apis/{group}/... paths, so core lists go through CoreV1Api's typed calls.
        if namespace:
            fn = getattr(self._core, f"list_namespaced_{_CORE_NAMESPACED_NAMES[resource.plural]}")
            return self._raw_json(what, access, fn, namespace)
        fn = getattr(self._core, f"list_{_CORE_LIST_NAMES[resource.plural]}")
        return self._raw_json(what, access, fn)

    def get_namespace(self, name: str) -> dict[str, Any] | None:
        """One Namespace object; None when it does not exist. A Role in that namespace can grant this `get`:
        the API server authorizes a request for namespace N's own object as a request in namespace N."""
        try:
            access = Access("get", plural="namespaces", namespace=name, name=name)
            return self._raw_json(f"reading namespace {name}", access, self._core.read_namespace, name)
        except NotFoundKubeError:
            return None

    def get_custom(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        """One namespaced custom object; NotFoundKubeError when it (or its CRD) does not exist."""
        return self._raw_json(
            f"reading {resource.plural}.{resource.group} {namespace}/{name}",
            Access("get", resource.group, resource.plural, namespace, name),
            self._custom.get_namespaced_custom_object,
            resource.group,
            resource.version,
            namespace,
            resource.plural,
            name,
        )

    def merge_patch_custom(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        body: dict[str, Any],
        *,
        dry_run: bool = False,
        field_manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386) of one custom object; with dry_run the server validates and persists nothing.

        Put `metadata.resourceVersion` in `body` to make the write conditional: a stale one gives ConflictKubeError.
        The server records the write in `metadata.managedFields` under `field_manager`.
        """
        return self._raw_json(
            f"{'checking' if dry_run else 'writing'} {resource.plural}.{resource.group} {namespace}/{name}",
            Access("patch", resource.group, resource.plural, namespace, name, dry_run=dry_run),
            self._custom.patch_namespaced_custom_object,
            resource.group,
            resource.version,
            namespace,
            resource.plural,
            name,
            body,
            dry_run="All" if dry_run else None,
            field_manager=field_manager,
        )

    def get_core_endpoints(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._raw_json(
                f"reading endpoints {namespace}/{name}",
                Access("get", plural="endpoints", namespace=namespace, name=name),
                self._core.read_namespaced_endpoints,
                name,
                namespace,
            )
        except NotFoundKubeError:
            return None


_CORE_LIST_NAMES = {
    "namespaces": "namespace",
    "nodes": "node",
    "services": "service_for_all_namespaces",
    "serviceaccounts": "service_account_for_all_namespaces",
    "pods": "pod_for_all_namespaces",
    "endpoints": "endpoints_for_all_namespaces",
}
_CORE_NAMESPACED_NAMES = {
    "services": "service",
    "serviceaccounts": "service_account",
    "pods": "pod",
    "endpoints": "endpoints",
}


def gateway_for(cluster: object, *, read_timeout: float | None = None) -> KubeGateway:
    """The gateway for a Cluster row, with the timeouts from settings (`read_timeout` overrides the read timeout)."""
    from django.conf import settings

    target = KubeTarget(
        kubeconfig_path=getattr(cluster, "kubeconfig_path", ""),
        context=getattr(cluster, "kube_context", ""),
        in_cluster=getattr(cluster, "in_cluster", False),
    )
    return KubeGateway(
        target,
        connect_timeout=settings.MESHBOARD_KUBE_CONNECT_TIMEOUT,
        read_timeout=read_timeout if read_timeout is not None else settings.MESHBOARD_KUBE_READ_TIMEOUT,
    )
