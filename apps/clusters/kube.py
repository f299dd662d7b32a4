"""The gateway to a cluster's Kubernetes API: the only module that touches the `kubernetes` client.

It owns client construction (kubeconfig or in-cluster), credentials, timeouts, and the mapping of every failure to
`TransientKubeError` (worth retrying: unreachable, timeout, 429, 5xx) or `PermanentKubeError` (a person must act:
401, 403, TLS, bad kubeconfig). Lists are decoded from the raw JSON rather than through the client's pydantic models:
callers want plain dicts, and model decoding of thousands of pods costs more than the HTTP round trip.

Credentials: whatever the kubeconfig's user holds (a token, `tokenFile`, a client certificate, an `exec` plugin
such as kubelogin), or the pod's service account in-cluster. An exec plugin runs once per process for a kubeconfig
user and its credential is kept until shortly before its `expirationTimestamp` (`ExecCredentials`), so the worker's
threads share one token and a plugin that issues a new token on every run does not invalidate the one in flight. A
401 makes the gateway load the credential again (the plugin runs again; a `tokenFile` is read again) and repeat
the call once when that gave a different credential: a token that expired or was rotated mid-run costs one call,
not the run. A 401 that stays says what is wrong with the credential when it can tell (an expired token or client
certificate, a plugin's token refused), and a TLS failure says what to fix (the CA, the name in the server URL).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.dateutil import parse_rfc3339
from kubernetes.config.exec_provider import ExecProvider
from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

from apps.core.errors import GatewayError

from .tls import is_tls_error, tls_problem

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


_PLAIN_TO_TLS = "Client sent an HTTP request to an HTTPS server"


def map_api_exception(
    exc: ApiException, what: str, access: Access | None = None, credential: str = "", host: str = ""
) -> KubeError:
    """`credential`: what the gateway knows about the credential it sent (for a 401), e.g. that it expired.
    `host`: the server URL, for TLS failures (which the client reports as status 0)."""
    status = exc.status or 0
    detail = _describe_status(exc)
    if status == 0 and is_tls_error(str(exc.reason or "")):
        return _tls_error(str(exc.reason), what, host)
    if status == 400 and _PLAIN_TO_TLS in str(exc.body or ""):
        return PermanentKubeError(
            f"{what}: the API server at {host} speaks HTTPS, but the kubeconfig's server URL says http (400: "
            f"{_PLAIN_TO_TLS}). Use https:// in the server URL.",
            status=400,
        )
    if status == 401:
        failed = f" ({access.what()})" if access else ""
        known = f" {credential}" if credential else ""
        return PermanentKubeError(
            f"{what}: the API server refused our credentials (401 Unauthorized){failed}: the token or client "
            f"certificate in the kubeconfig is missing, expired or revoked.{known} Renew the kubeconfig or token; "
            "no RBAC grant helps until the API server accepts the credentials.",
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


_TLS_NAME_FIX = (
    "Use an address the certificate names in the kubeconfig's server URL, or set tls-server-name in the "
    "kubeconfig's cluster to a name it does."
)


def _tls_error(text: str, what: str, host: str) -> PermanentKubeError:
    problem = tls_problem(text, "the API server", host, ca_source="the kubeconfig", name_fix=_TLS_NAME_FIX)
    return PermanentKubeError(f"{what}: {problem}")


def _transport_error(exc: Exception, what: str, host: str) -> KubeError:
    text = str(exc)
    if is_tls_error(text) or isinstance(exc, ssl.SSLError | urllib3.exceptions.SSLError):
        return _tls_error(text, what, host)
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError) or "timed out" in text.lower():
        return TransientKubeError(f"{what}: the API server at {host} did not answer in time ({exc.__class__.__name__})")
    cause = getattr(exc, "reason", None) or exc
    return TransientKubeError(f"{what}: cannot reach the API server at {host}: {cause}")


# -- credentials ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Credential:
    status: dict[str, Any]  # the ExecCredential's status
    fetched_at: datetime
    expiry: datetime | None


class ExecCredentials:
    """The credentials of kubeconfig exec plugins, one per (kubeconfig, context, plugin), shared by the process.

    A credential is used until `REFRESH_MARGIN` (or a quarter of its lifetime, when that is shorter) before its
    `expirationTimestamp`; without one, until a 401 invalidates it. One plugin run at a time per key."""

    REFRESH_MARGIN = timedelta(seconds=30)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Credential] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self.runs = 0  # plugin runs, for tests

    def _fresh(self, entry: _Credential | None, now: datetime) -> bool:
        if entry is None:
            return False
        if entry.expiry is None:
            return True
        margin = min(self.REFRESH_MARGIN, max(entry.expiry - entry.fetched_at, timedelta(0)) / 4)
        return now < entry.expiry - margin

    def get(self, key: str, run: Callable[[], dict[str, Any]]) -> _Credential:
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            now = datetime.now(UTC)
            entry = self._entries.get(key)
            if self._fresh(entry, now):
                return entry
            status = run()
            self.runs += 1
            expiry = None
            if status.get("expirationTimestamp"):
                try:
                    expiry = parse_rfc3339(status["expirationTimestamp"])
                except ValueError:
                    expiry = None
            entry = _Credential(status, now, expiry)
            self._entries[key] = entry
            return entry

    def invalidate(self, key: str, fetched_before: datetime | None = None) -> None:
        """Forget the credential of `key` (only if fetched before `fetched_before`: a 401 to a call that began
        earlier says nothing about a credential another thread fetched since)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and (fetched_before is None or entry.fetched_at < fetched_before):
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


EXEC_CREDENTIALS = ExecCredentials()


def _exec_command(user: Any) -> str:
    try:
        return os.path.basename(str(user["exec"]["command"]))
    except (KeyError, TypeError, ConfigException):
        return "the exec plugin"


class _Loader(KubeConfigLoader):
    """The client's kubeconfig loader, with exec credentials from `EXEC_CREDENTIALS` instead of a plugin run per
    gateway and per refresh; a plugin that fails raises PermanentKubeError saying so (the client only logs it)."""

    def __init__(self, *args: Any, exec_key_prefix: str, **kwargs: Any) -> None:
        self.exec_key = ""
        self._exec_key_prefix = exec_key_prefix
        super().__init__(*args, **kwargs)

    @property
    def uses_exec(self) -> bool:
        return bool(self._user) and "exec" in self._user

    @property
    def exec_command(self) -> str:
        return _exec_command(self._user) if self.uses_exec else ""

    def _load_from_exec_plugin(self) -> bool | None:
        if not self.uses_exec:
            return None
        spec = json.dumps(self._user.value.get("exec"), sort_keys=True, default=str)
        self.exec_key = f"{self._exec_key_prefix}\0{spec}"
        base_path = self._get_base_path(self._cluster.path)

        def run() -> dict[str, Any]:
            try:
                return ExecProvider(self._user["exec"], base_path, self._cluster).run()
            except (ConfigException, OSError, ValueError) as exc:
                raise PermanentKubeError(
                    f"the kubeconfig's exec credential plugin ({self.exec_command}) failed: {exc}. Run it by hand "
                    "as the worker's user to see why (for kubelogin: is the Azure login or workload identity "
                    "available to the worker?)."
                ) from None

        credential = EXEC_CREDENTIALS.get(self.exec_key, run)
        status = credential.status
        if "token" in status:
            self.token = f"Bearer {status['token']}"
            if credential.expiry is not None:
                self.expiry = credential.expiry
            return True
        # A plugin that returns a client certificate: the client's own handling (no caching).
        return super()._load_from_exec_plugin()

    def reload(self, configuration: k8s.Configuration, refused_since: datetime) -> None:
        """Load the credential again (a 401 to a call made at `refused_since` said it is no good): the plugin runs
        again unless another call already fetched a newer credential, a tokenFile is read again."""
        if self.exec_key:
            EXEC_CREDENTIALS.invalidate(self.exec_key, fetched_before=refused_since)
        self.__dict__.pop("expiry", None)
        self._load_authentication()
        self._set_config(configuration)


def _jwt_expiry(token: str) -> datetime | None:
    """The `exp` of a JWT (service-account and Entra ID tokens are JWTs), unverified; None for other tokens."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return datetime.fromtimestamp(float(payload["exp"]), UTC)
    except (ValueError, KeyError, TypeError, binascii.Error, OverflowError):
        return None


def _when(moment: datetime) -> str:
    ago = int((datetime.now(UTC) - moment).total_seconds())
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({ago} s ago)" if ago >= 0 else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _certificate_expiry(path: str) -> tuple[datetime, str] | None:
    try:
        from cryptography import x509

        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (ImportError, OSError, ValueError):
        return None
    return cert.not_valid_after_utc, cert.subject.rfc4514_string()


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
        # List requests per resource key: one per list, or one per page of a paged list.
        self.list_requests: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loader: _Loader | None = None
        self._api_client = self._build_client(target)
        self.host = self._api_client.configuration.host
        self._core = k8s.CoreV1Api(self._api_client)
        self._custom = k8s.CustomObjectsApi(self._api_client)
        self._version = k8s.VersionApi(self._api_client)
        self._apis = k8s.ApisApi(self._api_client)

    def _build_client(self, target: KubeTarget) -> k8s.ApiClient:
        configuration = k8s.Configuration()
        try:
            if target.in_cluster:
                k8s_config.load_incluster_config(client_configuration=configuration)
            else:
                path = os.path.expanduser(target.kubeconfig_path or k8s_config.KUBE_CONFIG_DEFAULT_LOCATION)
                merged = KubeConfigMerger(path)
                if merged.config is None:
                    raise ConfigException("Invalid kube-config file. No configuration found.")
                # The same as load_kube_config, but never writing the file back (it may be mounted read-only).
                self._loader = _Loader(
                    config_dict=merged.config,
                    active_context=target.context or None,
                    config_base_path=None,
                    exec_key_prefix=f"{os.path.abspath(path)}\0{target.context}",
                )
                self._loader.load_and_set(configuration)
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
        for attempt in (1, 2):
            with self._lock:
                self.requests += 1
            started, sent = datetime.now(UTC), self._bearer()
            try:
                return fn(*args, _request_timeout=self.timeout, **kwargs)
            except ApiException as exc:
                if exc.status == 401 and attempt == 1 and self._reload_credential(started, sent):
                    continue  # a new credential (an expired exec token, a rotated token file): try it once
                credential = self.credential_problem() if exc.status == 401 else ""
                raise map_api_exception(exc, what, access, credential, self.host) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise _transport_error(exc, what, self.host) from None
        raise AssertionError("unreachable")

    def _bearer(self) -> str:
        return str(self._api_client.configuration.api_key.get("BearerToken") or "")

    def _reload_credential(self, started: datetime, sent: str) -> bool:
        """Load the kubeconfig's credential again after a 401; True when the call is worth repeating (an exec
        plugin's credential fetched since the call began, or a token that changed, e.g. a rotated tokenFile)."""
        if self._loader is None:
            return False
        self._loader.reload(self._api_client.configuration, started)
        return self._loader.uses_exec or self._bearer() != sent

    def credential_problem(self) -> str:
        """What is known to be wrong with the credential a 401 refused, as sentences ("" when nothing is)."""
        configuration = self._api_client.configuration
        token = self._bearer().removeprefix("Bearer ").strip()
        if self._loader is not None and self._loader.uses_exec:
            command = self._loader.exec_command
            expiry = getattr(self._loader, "expiry", None)
            if expiry is not None and expiry <= datetime.now(UTC):
                return (
                    f"The kubeconfig's exec plugin ({command}) gave a token that expired at {_when(expiry)}: run it "
                    "by hand and check that it can renew the token (for kubelogin: the Azure login)."
                )
            return (
                f"The token comes from the kubeconfig's exec plugin ({command}) and was fetched again for this "
                "call, so the API server refuses the identity it logs in as: run the plugin by hand and check the "
                "account, tenant and server ID it uses."
            )
        if token:
            expiry = _jwt_expiry(token)
            if expiry is not None and expiry <= datetime.now(UTC):
                return f"The bearer token expired at {_when(expiry)}: get a new token."
            if expiry is not None:
                return (
                    f"The bearer token has not expired (it is valid until {_when(expiry)}), so the API server "
                    "does not trust its issuer or it was revoked (its service account deleted?): get a new token."
                )
            return "The API server does not know the bearer token (wrong, revoked or from another cluster)."
        cert_file = getattr(configuration, "cert_file", None)
        if cert_file:
            found = _certificate_expiry(cert_file)
            if found is not None and found[0] <= datetime.now(UTC):
                return f"The client certificate ({found[1]}) expired at {_when(found[0])}: get a new kubeconfig."
            if found is not None:
                return (
                    f"The client certificate ({found[1]}) is valid until {_when(found[0])}, so the API server does "
                    "not trust the CA that signed it: get a kubeconfig for this cluster."
                )
        if not token and not cert_file:
            return "The kubeconfig gives no credential for its user (no token, client certificate or exec plugin)."
        return ""

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

    def list(
        self,
        resource: Resource,
        namespace: str = "",
        *,
        page_size: int = 0,
        transform: Callable[[list[dict[str, Any]]], list[Any]] | None = None,
    ) -> list[Any]:
        """Every object of one resource type: across all namespaces, or in `namespace` only.

        `page_size` 0: one request with `resourceVersion=0`, which the API server answers from its watch cache (no
        etcd read, possibly a moment old, and whole: the cache ignores `limit`). `page_size` N: `limit=N` pages,
        each following the previous one's `continue` token, read from etcd at the revision of the first (one
        consistent list), so neither the API server nor this process holds the whole list as one body. `transform`
        turns each page's items into what the caller keeps (decoded rows, pruned objects) as the page arrives, so
        the raw JSON of one page at a time is alive; the answer is the pages' results, in order. A token that
        expired (410: the list took longer than etcd keeps old revisions, 5 minutes by default) restarts the list
        once, as client-go's pager does.
        """
        if namespace and not resource.namespaced:
            raise ValueError(f"{resource.plural} are cluster-scoped: they cannot be listed in a namespace")
        where = f" in namespace {namespace}" if namespace else ""
        what = f"listing {resource.plural}.{resource.group or 'core'}/{resource.version}{where}"
        access = Access("list", resource.group, resource.plural, namespace, namespaced=resource.namespaced)
        for attempt in (1, 2):
            try:
                return self._list_pages(resource, namespace, what, access, page_size, transform)
            except KubeError as exc:
                if exc.status != 410 or attempt == 2 or not page_size:
                    raise
        raise AssertionError("unreachable")

    def _list_pages(
        self,
        resource: Resource,
        namespace: str,
        what: str,
        access: Access,
        page_size: int,
        transform: Callable[[list[dict[str, Any]]], list[Any]] | None,
    ) -> list[Any]:
        items: list[Any] = []
        token = ""
        while True:
            if not page_size:
                options: dict[str, Any] = {"resource_version": "0"}
            else:
                options = {"limit": page_size, **({"_continue": token} if token else {})}
            with self._lock:
                self.list_requests[resource.key] = self.list_requests.get(resource.key, 0) + 1
            body = self._list_call(what, access, resource, namespace, options)
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise TransientKubeError(f"{what}: the answer is not a List object")
            page = body["items"]
            items += transform(page) if transform is not None else page
            meta = body.get("metadata")
            token = str(meta.get("continue") or "") if isinstance(meta, dict) and page_size else ""
            if not token:
                return items

    def _list_call(self, what: str, access: Access, resource: Resource, namespace: str, options: dict) -> Any:
        if resource.group and namespace:
            fn = self._custom.list_namespaced_custom_object
            return self._raw_json(
                what, access, fn, resource.group, resource.version, namespace, resource.plural, **options
            )
        if resource.group:
            fn = self._custom.list_cluster_custom_object
            return self._raw_json(what, access, fn, resource.group, resource.version, resource.plural, **options)
        # CustomObjectsApi builds /apis/{group}/... paths, so core lists go through CoreV1Api's typed calls.
        if namespace:
            fn = getattr(self._core, f"list_namespaced_{_CORE_NAMESPACED_NAMES[resource.plural]}")
            return self._raw_json(what, access, fn, namespace, **options)
        fn = getattr(self._core, f"list_{_CORE_LIST_NAMES[resource.plural]}")
        return self._raw_json(what, access, fn, **options)

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
