"""The Istio evaluator pinned by fixed vectors from Istio's documentation, not by the translation it checks.

Policies are the documentation's examples, as YAML (Istio's AuthorizationPolicy reference, `security/v1/
authorization_policy.proto` in istio/api, and the security concepts page, `content/en/docs/concepts/security/
index.md` in istio/istio.io): no policy vs allow-nothing, deny-all vs allow-all, DENY before ALLOW, value matching
(exact, prefix, suffix, presence), exclusion matching (`notPaths`, `notRequestPrincipals`), a `when` in the same rule
vs in a rule of its own, and the TCP rules (HTTP-only fields in ALLOW and DENY rules).
"""

from __future__ import annotations

import pytest
import yaml

from apps.policies.istio_eval import ALLOW_ANY, REGISTRY_ONLY, IstioEgress, IstioPolicies, Unsupported
from apps.policies.model import TCP, TLS, ExternalRequest, Origin, Request
from apps.policies.smi_access import Identity

from .builders import group, request

HTTPBIN = group("foo/httpbin", labels={"app": "httpbin", "version": "v1"}, ports=((8000, "http"), (8080, "http")))
PRODUCTS = group("default/products", labels={"app": "products"})
MONGODB = group("default/mongodb", labels={"app": "mongodb"}, ports=((27017, TCP),))


def policies(text: str, **kw) -> IstioPolicies:
    return IstioPolicies([d for d in yaml.safe_load_all(text) if d], **kw)


def allowed(p: IstioPolicies, req) -> bool:
    return p.evaluate(req).allowed


def test_it_allows_everything_without_a_policy():
    # "For workloads without authorization policies applied, Istio allows all requests."
    p = policies("")
    assert allowed(p, request("default/sleep", HTTPBIN, "/anything", "DELETE"))


ALLOW_NOTHING = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
 name: allow-nothing
 namespace: foo
spec:
  {}
"""


def test_it_denies_everything_under_allow_nothing():
    # "the following authorization policy applies to all workloads in namespace foo. It allows nothing and
    # effectively denies all requests to workloads in namespace foo."
    p = policies(ALLOW_NOTHING)
    assert not allowed(p, request("default/sleep", HTTPBIN))
    assert not allowed(p, request("foo/httpbin", HTTPBIN))
    # ... and only in namespace foo.
    assert allowed(p, request("default/sleep", PRODUCTS))


def test_it_treats_an_allow_without_rules_and_a_selector_as_allow_nothing_for_the_selected_workloads_only():
    p = policies(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
"""
    )
    assert not allowed(p, request("default/sleep", HTTPBIN))
    other = group("foo/other", labels={"app": "other"})
    assert allowed(p, request("default/sleep", other))


ALLOW_ALL = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
 name: allow-all
 namespace: foo
spec:
 rules:
 - {}
"""
DENY_ALL = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-all
  namespace: foo
spec:
  action: DENY
  rules:
  - {}
"""


def test_it_allows_everything_under_allow_all_and_it_overrides_allow_nothing():
    p = policies(ALLOW_ALL + "---" + ALLOW_NOTHING)
    assert allowed(p, request("dev/anyone", HTTPBIN, "/x", "PUT"))


def test_it_puts_deny_before_allow():
    # "It will always deny the request even if there is another ALLOW policy allowing the request because the DENY
    # policy takes precedence over the ALLOW policy."
    p = policies(ALLOW_ALL + "---" + DENY_ALL)
    assert not allowed(p, request("default/sleep", HTTPBIN))
    verdict = p.evaluate(request("default/sleep", HTTPBIN))
    assert verdict.policy == "foo/deny-all"


HTTPBIN_ALLOW = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: foo
spec:
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    - source:
        namespaces: ["test"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/info*"]
    - operation:
        methods: ["POST"]
        paths: ["/data"]
"""


@pytest.mark.parametrize(
    ("source", "method", "path", "expected"),
    [
        ("default/sleep", "GET", "/info", True),  # prefix "/info*" matches "/info"
        ("default/sleep", "GET", "/info/x", True),
        ("default/sleep", "GET", "/inf", False),
        ("default/sleep", "POST", "/data", True),
        ("default/sleep", "POST", "/data/x", False),  # exact
        ("default/sleep", "GET", "/data", False),  # fields of one operation are ANDed
        ("test/anyone", "GET", "/info", True),  # sources are ORed
        ("dev/anyone", "GET", "/info", False),
        (None, "GET", "/info", False),  # plaintext has no principal and no namespace
    ],
)
def test_it_matches_the_reference_allow_example(source, method, path, expected):
    assert allowed(policies(HTTPBIN_ALLOW), request(source, HTTPBIN, path, method)) is expected


def test_it_denies_from_a_namespace_on_a_method_and_allows_the_rest_without_allow_policies():
    # "It denies requests from the dev namespace to the POST method on all workloads in the foo namespace."
    p = policies(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: foo
spec:
  action: DENY
  rules:
  - from:
    - source:
        namespaces: ["dev"]
    to:
    - operation:
        methods: ["POST"]
"""
    )
    assert not allowed(p, request("dev/anyone", HTTPBIN, "/x", "POST"))
    assert allowed(p, request("dev/anyone", HTTPBIN, "/x", "GET"))
    assert allowed(p, request("prod/anyone", HTTPBIN, "/x", "POST"))


TESTER = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: tester
  namespace: default
spec:
  selector:
    matchLabels:
      app: products
  action: ALLOW
  rules:
  - to:
    - operation:
        paths: ["/test/*", "*/info"]
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/test/a", True),
        ("/test/", True),
        ("/test", False),  # the prefix is "/test/"
        ("/testing", False),
        ("/a/b/info", True),
        ("/info", True),  # suffix "*/info" matches "/info"
        ("/info/x", False),
        ("/x/information", False),
    ],
)
def test_it_matches_prefix_and_suffix_paths(path, expected):
    # "allows access at paths with the /test/* prefix or the */info suffix"
    assert allowed(policies(TESTER), request("default/anyone", PRODUCTS, path)) is expected


def test_it_excludes_not_paths():
    # Exclusion matching: the concept page's rule `to: notPaths ["/healthz"]` with `from: requestPrincipals ["*"]`.
    # Without a JWT the source never matches, so every request is denied; with principals instead of request
    # principals the exclusion alone decides.
    doc = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: disable-jwt-for-healthz
  namespace: default
spec:
  selector:
    matchLabels:
      app: products
  action: ALLOW
  rules:
  - to:
    - operation:
        notPaths: ["/healthz"]
    from:
    - source:
        requestPrincipals: ["*"]
"""
    assert not allowed(policies(doc), request("default/sleep", PRODUCTS, "/api"))
    assert not allowed(policies(doc), request("default/sleep", PRODUCTS, "/healthz"))
    with_principals = doc.replace('requestPrincipals: ["*"]', 'principals: ["*"]')
    assert allowed(policies(with_principals), request("default/sleep", PRODUCTS, "/api"))
    assert not allowed(policies(with_principals), request("default/sleep", PRODUCTS, "/healthz"))


def test_it_denies_admin_without_a_request_principal():
    # "denies the request to the /admin path for requests without request principals"
    p = policies(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: enable-jwt-for-admin
  namespace: default
spec:
  selector:
    matchLabels:
      app: products
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/admin"]
    from:
    - source:
        notRequestPrincipals: ["*"]
"""
    )
    assert not allowed(p, request("default/sleep", PRODUCTS, "/admin"))
    assert allowed(p, request("default/sleep", PRODUCTS, "/other"))


def test_it_requires_a_principal_for_presence():
    # "To allow only authenticated users, set principals to "*" instead"
    p = policies(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
 name: httpbin
 namespace: foo
spec:
 selector:
   matchLabels:
     app: httpbin
     version: v1
 action: ALLOW
 rules:
 - from:
   - source:
       principals: ["*"]
   to:
   - operation:
       methods: ["GET", "POST"]
"""
    )
    assert allowed(p, request("any/one", HTTPBIN, "/", "POST"))
    assert not allowed(p, request(None, HTTPBIN, "/", "POST"))
    assert not allowed(p, request("any/one", HTTPBIN, "/", "PUT"))


SAME_RULE = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
 name: httpbin
 namespace: foo
spec:
 selector:
   matchLabels:
     app: httpbin
     version: v1
 action: ALLOW
 rules:
 - from:
   - source:
       principals: ["cluster.local/ns/default/sa/sleep"]
   to:
   - operation:
       methods: ["GET"]
   when:
   - key: request.headers[version]
     values: ["v1", "v2"]
"""
# The same conditions written as Microsoft's OSM migration guide writes its header conditions: `when` in a rule of
# its own. Rules are ORed, so that rule admits anyone who sends the header.
OWN_RULE = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
 name: httpbin
 namespace: foo
spec:
 selector:
   matchLabels:
     app: httpbin
     version: v1
 action: ALLOW
 rules:
 - from:
   - source:
       principals: ["cluster.local/ns/default/sa/sleep"]
   to:
   - operation:
       methods: ["GET"]
 - when:
   - key: request.headers[version]
     values: ["v1", "v2"]
"""


def test_it_requires_a_when_in_the_same_rule_together_with_from_and_to():
    p = policies(SAME_RULE)
    assert allowed(p, request("default/sleep", HTTPBIN, "/", "GET", {"version": "v1"}))
    assert allowed(p, request("default/sleep", HTTPBIN, "/", "GET", {"Version": "v2"}))  # header names: any case
    assert not allowed(p, request("default/sleep", HTTPBIN, "/", "GET", {"version": "v3"}))
    assert not allowed(p, request("default/sleep", HTTPBIN, "/", "GET"))
    assert not allowed(p, request("default/thief", HTTPBIN, "/", "GET", {"version": "v1"}))


def test_it_lets_anyone_sending_the_header_through_a_when_in_its_own_rule():
    p = policies(OWN_RULE)
    assert allowed(p, request("default/thief", HTTPBIN, "/anything", "DELETE", {"version": "v1"}))
    assert allowed(p, request("default/sleep", HTTPBIN, "/", "GET"))  # the first rule alone


def test_it_applies_deny_rules_with_http_fields_to_tcp_traffic_and_drops_allow_rules_with_them():
    # "When this rule is applied to TCP traffic, the method field ... cannot be processed. For a DENY rule, missing
    # attributes are treated as matches. This means all TCP traffic on port 8080 would be denied."
    deny = policies(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: foo
spec:
  action: DENY
  rules:
  - to:
    - operation:
        methods: ["POST"]
        ports: ["8080"]
"""
    )
    tcp_dest = group("foo/httpbin", labels={"app": "httpbin"}, ports=((8080, TCP), (9090, TCP)))
    assert not allowed(deny, request("a/b", tcp_dest, port=8080, protocol=TCP))
    assert allowed(deny, request("a/b", tcp_dest, port=9090, protocol=TCP))
    # "If you use any HTTP only fields for a TCP workload, Istio will ignore HTTP-only fields": an ALLOW rule with
    # them never allows TCP traffic, the MongoDB example's ports-only rule does.
    mongo = policies(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: mongodb-policy
  namespace: default
spec:
 selector:
   matchLabels:
     app: mongodb
 action: ALLOW
 rules:
 - from:
   - source:
       principals: ["cluster.local/ns/default/sa/bookinfo-ratings-v2"]
   to:
   - operation:
       ports: ["27017"]
"""
    )
    assert allowed(mongo, request("default/bookinfo-ratings-v2", MONGODB, port=27017, protocol=TCP))
    assert not allowed(mongo, request("default/bookinfo-ratings", MONGODB, port=27017, protocol=TCP))
    with_method = policies(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mongodb-policy, namespace: default}
spec:
  selector: {matchLabels: {app: mongodb}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/bookinfo-ratings-v2"]}}]
    to: [{operation: {ports: ["27017"], methods: ["GET"]}}]
"""
    )
    assert not allowed(with_method, request("default/bookinfo-ratings-v2", MONGODB, port=27017, protocol=TCP))


def test_it_applies_root_namespace_policies_everywhere():
    p = policies(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
 name: allow-nothing
 namespace: istio-system
spec:
 selector:
   matchLabels:
     version: v1
""",
        root_namespace="istio-system",
    )
    assert not allowed(p, request("a/b", HTTPBIN))
    assert allowed(p, request("a/b", PRODUCTS))


def test_it_refuses_plaintext_under_strict_mtls_and_lets_workloads_without_a_sidecar_be():
    p = policies(ALLOW_ALL, strict_namespaces={"foo"}, sidecars={HTTPBIN.key})
    assert not allowed(p, request(None, HTTPBIN))
    no_sidecar = group("foo/legacy", labels={"app": "legacy"})
    assert allowed(policies(ALLOW_NOTHING, sidecars={HTTPBIN.key}), request("a/b", no_sidecar))


def test_it_says_what_it_does_not_model():
    with pytest.raises(Unsupported):
        policies(
            """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: foo}
spec: {action: CUSTOM, provider: {name: x}, rules: [{}]}
"""
        )
    p = policies(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: sa, namespace: foo}
spec: {rules: [{from: [{source: {serviceAccounts: ["foo/sleep"]}}]}]}
"""
    )
    with pytest.raises(Unsupported):
        p.evaluate(request("a/b", HTTPBIN))


IP_BLOCKS = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: ALLOW
  rules:
  - from:
    - source:
        ipBlocks: ["1.2.3.4", "5.6.7.0/24"]
"""


def from_address(address: str, dest=HTTPBIN) -> Request:
    return Request(None, dest, 8000, origin=Origin(f"address {address}", address=address))


def test_it_matches_ip_blocks_against_the_callers_address():
    # The reference's example source: `ipBlocks: ["1.2.3.4", "5.6.7.0/24"]`, an address or a CIDR.
    p = policies(IP_BLOCKS)
    assert allowed(p, from_address("1.2.3.4"))
    assert allowed(p, from_address("5.6.7.200"))
    assert not allowed(p, from_address("5.6.8.1"))
    assert not allowed(p, request("a/b", HTTPBIN))  # an address nobody knows is in no block
    not_blocks = policies(IP_BLOCKS.replace("ipBlocks", "notIpBlocks"))
    assert not allowed(not_blocks, from_address("1.2.3.4")) and allowed(not_blocks, from_address("9.9.9.9"))


def test_it_lets_plaintext_in_on_a_port_a_peer_authentication_sets_permissive():
    p = policies(IP_BLOCKS, strict_namespaces={"foo"}, permissive_ports={HTTPBIN.key: frozenset({8000})})
    assert allowed(p, from_address("1.2.3.4"))
    assert not allowed(p, Request(None, HTTPBIN, 8080, origin=Origin("x", address="1.2.3.4")))  # STRICT elsewhere


def test_it_judges_an_origin_with_an_istio_identity_by_its_principal():
    """An ingress controller with an outbound-only Istio sidecar calls with its service account's principal."""
    p = policies(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/ingress/sa/nginx"]}}], to: [{operation: {ports: ["8000"]}}]}]
""",
        strict_namespaces={"foo"},
    )
    nginx = Origin("ingress/nginx", istio_identity=Identity("ingress", "nginx"))
    assert allowed(p, Request(None, HTTPBIN, 8000, origin=nginx))
    assert not allowed(p, Request(None, HTTPBIN, 8000, origin=Origin("ingress/nginx")))  # plaintext: STRICT


ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-svc-https, namespace: shop}
spec:
  hosts: [api.dropboxapi.com, www.googleapis.com]
  location: MESH_EXTERNAL
  ports:
  - {number: 443, name: https, protocol: TLS}
  resolution: DNS
  exportTo: ["."]
"""


def test_it_passes_unknown_destinations_through_with_allow_any_and_refuses_them_with_registry_only():
    # ServiceEntry reference's first example (external-svc-https), exported to its own namespace only.
    entries = [yaml.safe_load(ENTRY)]
    shop, other = Identity("shop", "web"), Identity("other", "web")
    known = ExternalRequest(shop, "www.googleapis.com", 443, TLS)
    assert IstioEgress(REGISTRY_ONLY, entries).evaluate(known).allowed
    assert (
        not IstioEgress(REGISTRY_ONLY, entries).evaluate(ExternalRequest(other, "www.googleapis.com", 443, TLS)).allowed
    )
    assert (
        not IstioEgress(REGISTRY_ONLY, entries).evaluate(ExternalRequest(shop, "www.googleapis.com", 8443, TLS)).allowed
    )
    assert not IstioEgress(REGISTRY_ONLY, entries).evaluate(ExternalRequest(shop, "example.com", 443, TLS)).allowed
    assert IstioEgress(ALLOW_ANY, entries).evaluate(ExternalRequest(other, "example.com", 443, TLS)).allowed
