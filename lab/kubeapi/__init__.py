"""A Kubernetes API server stand-in that the official `kubernetes` client cannot tell from a cluster.

What it does: serves the REST protocol over HTTP/1.1 on 127.0.0.1 (plain, or HTTPS with a CA of its own: tls.py)
(JSON only, keep-alive, chunked watch) for Namespaces, Nodes, Services, Pods, Endpoints, ServiceAccounts,
Deployments, ReplicaSets, StatefulSets, DaemonSets, EndpointSlices, Ingresses, IngressClasses and the SMI, OSM, Flagger
and Istio custom resources whose CRDs ship in `crds/` (only the CRD groups a seed installs exist; the others 404
everywhere, discovery included). It answers discovery (/version, /api, /apis, /apis/{group}/{version}), sets
server-side metadata, keeps one resourceVersion counter (untouched by no-op writes), answers 409 on stale writes and
422 on schema violations of custom resources (pruning unknown fields, applying schema defaults, validating
type/required/enum/pattern/bounds/items/oneOf/anyOf/not as a structural schema would), applies merge patches (RFC
7386) and JSON patches (RFC 6902), filters by label and field selectors, streams watches with bookmarks and 410
Expired, honours dryRun=All, keeps metadata.managedFields for creates, updates and patches (see managedfields.py),
refuses bodies over 3 MiB with 413, and answers bytes that are not HTTP with a plain-text 400 and a closed
connection, as Go's server does. Seeds are loaded through the same create path as HTTP requests, except that status
is kept as the seed gives it.

What it does not do: no controllers (no Deployment → ReplicaSet → Pod, no Endpoints from Services: a seed must hold
what controllers would have made), no garbage collection (ownerReferences are ignored; deleting a namespace empties
it at once instead of leaving it Terminating), no admission webhooks, no authentication or RBAC unless asked (bearer
tokens and client certificates give 401, an RBAC evaluator over Role/ClusterRole files 403: auth.py, rbac.py;
otherwise any request is accepted), no CEL rules (`x-kubernetes-validations`), no validation of built-in kinds beyond
names, namespaces and label types, no protobuf, no server-side apply (managedFields treat every list as atomic),
strategic merge patch only for metadata.labels and metadata.annotations of built-ins (anything else gets 415), and no
/openapi, so kubectl cannot use it. Lists page as kube-apiserver's do (`limit` + `continue`, every chunk read at the
revision of the first, 410 Expired once that revision is compacted, `resourceVersion=0` whole as from the watch
cache: handler.py `_list`).

Test controls live on the server object: `server.faults` (a status, delay or dropped connection per path regex and
verb, before or after the request is handled) and `server.requests` (the request log). Only a server started with
`fault_control=True` (`--fault-control`) also serves the faults over HTTP, on `/_lab/faults`. README.md has it all.
"""

from .faults import Fault, Faults, RequestLog, RequestRecord
from .server import KubeAPIServer, SeedError

__all__ = ["Fault", "Faults", "KubeAPIServer", "RequestLog", "RequestRecord", "SeedError"]
