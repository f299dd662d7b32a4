"""A small RBAC authorizer for the stand-in, over Role, ClusterRole, RoleBinding and ClusterRoleBinding objects read
from YAML files (the ones in deploy/kubernetes/, or a test's own copy).

What a request asks for follows kube-apiserver's RequestInfoResolver (k8s.io/apiserver/pkg/endpoints/request/
requestinfo.go): /api/v1/... is the core group, /apis/<group>/<version>/... a named group, `namespaces/<ns>/` sets the
namespace, a request for a Namespace object counts as a request in that namespace, a GET without a name is `list`
(`watch` with watch=true), a DELETE without one `deletecollection`; every other path (/version, /apis, /api,
/apis/<group>[/<version>]) is a non-resource URL whose verb is the lower-cased HTTP method. Rules match as RBAC's
RuleAllows does (k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/rbac.go): verbs, apiGroups, resources (with
`resource/subresource` and `*/subresource`), resourceNames (an empty list matches any name) and nonResourceURLs
(with a trailing `*`). A ClusterRoleBinding grants everywhere; a RoleBinding (to a Role or a ClusterRole) only in its
namespace, so nonResourceURLs and cluster-scoped resources come only from ClusterRoleBindings. Subjects are Users,
Groups and ServiceAccounts (`system:serviceaccount:<ns>:<name>`).

For tests that check a set of manifests rather than serve requests: `Authorizer.grants_for(user)` lists each rule
bound to an identity with where it applies and which role gives it, `granted(rule)` the (verb, group, resource)
triples a resource rule grants, `unresolved_role_refs()` the bindings whose role is missing (which grant nothing),
and `logged_request_attributes(record)` what RBAC sees of a request in the stand-in's log.

Built in, as on every cluster: `system:discovery` and `system:public-info-viewer` (GET on /api, /apis, /version ...
for `system:authenticated`), and the group `system:masters`, which may do anything. Not modelled: aggregated
ClusterRoles, escalation checks on writes to RBAC objects, impersonation.

A denial is kube-apiserver's Forbidden Status: `trafficsplits.split.smi-spec.io "web-split" is forbidden: User "u"
cannot patch resource "trafficsplits" in API group "split.smi-spec.io" in the namespace "demo"`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import yaml

from .auth import UserInfo
from .status import APIError

RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
MASTERS = "system:masters"
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}

# plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go: system:discovery and system:public-info-viewer, both
# bound to system:authenticated (public-info-viewer to system:unauthenticated too).
DISCOVERY_RULES = (
    {
        "verbs": ["get"],
        "nonResourceURLs": [
            "/api",
            "/api/*",
            "/apis",
            "/apis/*",
            "/healthz",
            "/livez",
            "/openapi",
            "/openapi/*",
            "/readyz",
            "/version",
            "/version/",
        ],
    },
)


@dataclass(frozen=True)
class Attributes:
    """What one request asks for, in RBAC's terms."""

    verb: str
    path: str = ""  # non-resource requests
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)

    @property
    def rule_resource(self) -> str:
        """The resource as a rule names it: `pods`, or `pods/log` for a subresource."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def __str__(self) -> str:
        """`get /version`, `list pods.core`, `patch trafficsplits.split.smi-spec.io/web-split in demo`."""
        if not self.is_resource:
            return f"{self.verb} {self.path}"
        where = f" in {self.namespace}" if self.namespace else ""
        name = f"/{self.name}" if self.name else ""
        return f"{self.verb} {self.rule_resource}.{self.group or 'core'}{name}{where}"


def request_attributes(method: str, path: str, watch: bool = False) -> Attributes:
    """RequestInfoResolver, as much of it as the stand-in serves."""
    parts = [p for p in path.split("/") if p]
    non_resource = Attributes(verb=method.lower(), path=path)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    rest = parts[1:]
    group = ""
    if parts[0] == "apis":
        if len(rest) < 3:
            return non_resource
        group, rest = rest[0], rest[1:]
    rest = rest[1:]  # the version
    verb = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest:
        return non_resource
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 else ""
    if not name and verb == "get":
        verb = "watch" if watch else "list"
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(verb, "", group, resource, subresource, namespace, name)


def logged_request_attributes(record) -> Attributes:
    """What RBAC sees of a request in the stand-in's log (`faults.RequestRecord`: method, path, query), with the
    `watch` flag read as the handler reads it (the last value, `true` or `1`)."""
    watch = (parse_qs(record.query, keep_blank_values=True).get("watch") or [""])[-1].lower() in ("true", "1")
    return request_attributes(record.method, record.path, watch)


def _has(values: Iterable[str], wanted: str) -> bool:
    values = list(values or [])
    return "*" in values or wanted in values


def rule_allows(rule: dict, request: Attributes) -> bool:
    if not _has(rule.get("verbs"), request.verb):
        return False
    if not request.is_resource:
        return any(
            url == "*" or url == request.path or (url.endswith("*") and request.path.startswith(url[:-1]))
            for url in rule.get("nonResourceURLs") or []
        )
    resources = rule.get("resources") or []
    resource_ok = (
        "*" in resources
        or request.rule_resource in resources
        or (bool(request.subresource) and f"*/{request.subresource}" in resources)
    )
    names = rule.get("resourceNames") or []
    return _has(rule.get("apiGroups"), request.group) and resource_ok and (not names or request.name in names)


def granted(rule: dict) -> set[tuple[str, str, str]]:
    """Each (verb, API group, resource) a resource rule names, as written (a `*` stays a `*`)."""
    return {
        (verb, group, resource)
        for verb in rule.get("verbs") or []
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
    }


def _documents(path: Path) -> list[dict]:
    files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
    docs: list[dict] = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "List" or str(doc.get("kind", "")).endswith("List"):
                docs += [d for d in doc.get("items") or [] if isinstance(d, dict)]
            else:
                docs.append(doc)
    return docs


def _subject_matches(subject: dict, user: UserInfo, groups: tuple[str, ...], binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


@dataclass(frozen=True)
class Grant:
    """One rule bound to an identity: everywhere (a ClusterRoleBinding) or in one namespace (a RoleBinding)."""

    rule: dict
    namespace: str  # "" for a ClusterRoleBinding
    role: str  # "ClusterRole meshboard-collector"

    def allows(self, request: Attributes) -> bool:
        if self.namespace and request.namespace != self.namespace:
            return False
        return rule_allows(self.rule, request)


class Authorizer:
    """`Authorizer.from_paths([...])` or `Authorizer(objects)`; `allows(user, attributes)`."""

    def __init__(self, objects: Iterable[dict]) -> None:
        self.roles: dict[tuple[str, str, str], list[dict]] = {}
        self.bindings: list[dict] = []
        for obj in objects:
            kind = obj.get("kind")
            if kind not in RBAC_KINDS:
                continue
            meta = obj.get("metadata") or {}
            namespace = (meta.get("namespace") or "default") if kind in ("Role", "RoleBinding") else ""
            if kind in ("Role", "ClusterRole"):
                self.roles[(kind, namespace, meta.get("name", ""))] = list(obj.get("rules") or [])
            else:
                self.bindings.append({**obj, "_namespace": namespace})

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path]) -> Authorizer:
        docs: list[dict] = []
        for path in paths:
            docs += _documents(Path(path))
        return cls(docs)

    @staticmethod
    def _role_key(binding: dict) -> tuple[str, str, str]:
        ref = binding.get("roleRef") or {}
        role_namespace = binding["_namespace"] if ref.get("kind") == "Role" else ""
        return ref.get("kind", ""), role_namespace, ref.get("name", "")

    def grants_for(self, user: UserInfo) -> list[Grant]:
        """Every rule the loaded bindings give `user`, in binding order (the built-in discovery rules aside)."""
        groups = user.all_groups()
        grants: list[Grant] = []
        for binding in self.bindings:
            where = binding["_namespace"]
            if not any(_subject_matches(s, user, groups, where) for s in binding.get("subjects") or []):
                continue
            kind, _, name = key = self._role_key(binding)
            grants += [Grant(rule, where, f"{kind} {name}") for rule in self.roles.get(key, [])]
        return grants

    def unresolved_role_refs(self) -> list[str]:
        """The bindings whose roleRef names no loaded role (they grant nothing, as on a cluster)."""
        missing = []
        for binding in self.bindings:
            kind, namespace, name = key = self._role_key(binding)
            if key not in self.roles:
                where = f"{binding['_namespace']}/" if binding["_namespace"] else ""
                role = f"{namespace}/{name}" if namespace else name
                missing.append(f"{binding['kind']} {where}{(binding.get('metadata') or {}).get('name')}: {kind} {role}")
        return missing

    def rules_for(self, user: UserInfo, namespace: str) -> list[dict]:
        """Every rule that applies to `user` for a request in `namespace` ("" for cluster scope)."""
        grants = self.grants_for(user)
        return [*DISCOVERY_RULES, *(g.rule for g in grants if not g.namespace or g.namespace == namespace)]

    def allows(self, user: UserInfo, request: Attributes) -> bool:
        if MASTERS in user.groups:
            return True
        return any(rule_allows(rule, request) for rule in self.rules_for(user, request.namespace))


def forbidden(user: UserInfo, request: Attributes) -> APIError:
    """kube-apiserver's answer to a request RBAC denies (endpoints/handlers/responsewriters Forbidden)."""
    if not request.is_resource:
        return APIError(403, f'forbidden: User "{user.name}" cannot {request.verb} path "{request.path}"', details={})
    resource = request.rule_resource
    scope = f'in the namespace "{request.namespace}"' if request.namespace else "at the cluster scope"
    reason = f'User "{user.name}" cannot {request.verb} resource "{resource}" in API group "{request.group}" {scope}'
    qualified = f"{request.resource}.{request.group}" if request.group else request.resource
    subject = f'{qualified} "{request.name}"' if request.name else qualified
    details: dict = {}
    if request.name:
        details["name"] = request.name
    if request.group:
        details["group"] = request.group
    details["kind"] = request.resource
    return APIError(403, f"{subject} is forbidden: {reason}", details=details)
