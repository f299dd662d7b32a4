"""Kubernetes RBAC, as much of it as the deploy tests need: what a request asks for, and whether rules allow it.

`request_attributes` follows the API server's RequestInfoResolver (k8s.io/apiserver/pkg/endpoints/request/
requestinfo.go): /api/v1/... is the core group, /apis/<group>/<version>/... a named group; `namespaces/<ns>/`
sets the namespace, and a request for a Namespace object itself counts as a request in that namespace; every other
path (/version, /apis, /api, /apis/<group>) is a non-resource URL. `allows` follows RBAC's rule matching
(k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/rbac.go, RuleAllows).
"""

from __future__ import annotations

from dataclasses import dataclass

READ_VERBS = {"get", "list", "watch"}

# The API server's default ClusterRoles that let every authenticated identity read discovery and the version
# (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go: system:discovery and system:public-info-viewer,
# both bound to system:authenticated). Meshboard's roles need not, and do not, grant these paths.
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
    verb: str
    path: str = ""  # non-resource requests only
    group: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)

    def __str__(self) -> str:
        if not self.is_resource:
            return f"{self.verb} {self.path}"
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.resource}.{self.group or 'core'}{'/' + self.name if self.name else ''}{where}"


def request_attributes(method: str, path: str, query: str = "") -> Attributes:
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return Attributes(verb=method.lower(), path=path)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 2:
        namespace = rest[1]
        if len(rest) >= 3:
            rest = rest[2:]
    resource, name = rest[0], (rest[1] if len(rest) >= 2 else "")
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"  # a subresource
    watching = "watch=true" in query.split("&") or "watch=1" in query.split("&")
    verb = {
        "GET": "get" if name else ("watch" if watching else "list"),
        "HEAD": "get" if name else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }[method]
    return Attributes(verb=verb, group=group, resource=resource, namespace=namespace, name=name)


def _has(values: list[str], wanted: str) -> bool:
    return "*" in values or wanted in values


def allows(rule: dict, request: Attributes) -> bool:
    if not _has(rule.get("verbs", []), request.verb):
        return False
    if not request.is_resource:
        return any(
            url == request.path or (url.endswith("*") and request.path.startswith(url[:-1]))
            for url in rule.get("nonResourceURLs", [])
        )
    names = rule.get("resourceNames") or []
    return (
        _has(rule.get("apiGroups", []), request.group)
        and _has(rule.get("resources", []), request.resource)
        and (not names or request.name in names)
    )


def grants(rule: dict) -> set[tuple[str, str, str]]:
    """Each (verb, group, resource) a resource rule grants."""
    return {
        (verb, group, resource)
        for verb in rule.get("verbs", [])
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
    }


@dataclass(frozen=True)
class Grant:
    """A rule bound to an identity: in every namespace and cluster-wide (ClusterRoleBinding), or in one namespace."""

    rule: dict
    namespace: str  # "" for a ClusterRoleBinding
    role: str

    def allows(self, request: Attributes) -> bool:
        if self.namespace and request.namespace != self.namespace:
            return False
        return allows(self.rule, request)


def grants_of(objects: list[dict], service_account: str, namespace: str = "meshboard") -> list[Grant]:
    """The rules bound to system:serviceaccount:<namespace>:<service_account> by the rendered objects."""
    roles = {
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d.get("rules") or []
        for d in objects
        if d["kind"] in {"Role", "ClusterRole"}
    }
    out = []
    for binding in objects:
        if binding["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        subjects = binding.get("subjects") or []
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == service_account and s.get("namespace") == namespace
            for s in subjects
        ):
            continue
        where = binding["metadata"].get("namespace", "") if binding["kind"] == "RoleBinding" else ""
        ref = binding["roleRef"]
        role_namespace = where if ref["kind"] == "Role" else ""
        rules = roles[(ref["kind"], role_namespace, ref["name"])]
        out += [Grant(rule, where, f"{ref['kind']} {ref['name']}") for rule in rules]
    return out


def wildcards(objects: list[dict]) -> list[str]:
    found = []
    for role in objects:
        if role["kind"] not in {"Role", "ClusterRole"}:
            continue
        for rule in role.get("rules") or []:
            for field in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
                if any("*" in value for value in rule.get(field) or []):
                    found.append(f"{role['kind']} {role['metadata']['name']}: {field} {rule[field]}")
    return found
