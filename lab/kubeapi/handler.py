"""The HTTP side: parse, drain the body, apply faults, dispatch to the store, answer JSON (or a chunked watch)."""

from __future__ import annotations

import base64
import json
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import yaml

from . import discovery, faultcontrol, managedfields, rbac, routes, watch
from .auth import UserInfo
from .faults import Fault, RequestRecord
from .managedfields import Writer
from .patching import APPLY, BUILTIN_PATCH_TYPES, CR_PATCH_TYPES
from .registry import ResourceType
from .routes import DiscoveryRoute, ResourceRoute
from .selectors import parse_field_selector, parse_label_selector
from .status import (
    APIError,
    bad_request,
    cause,
    format_value,
    invalid,
    method_not_allowed,
    resource_not_found,
    status,
    success,
    too_large,
    unsupported_media_type,
)
from .store import render
from .tls import subject_identity

if TYPE_CHECKING:
    from .server import KubeAPIServer

MAX_BODY = 3 * 1024 * 1024  # the apiserver's request body limit
_DRAIN_LIMIT = 64 * 1024 * 1024  # past this we close the connection rather than read on
_BUILTIN_BODY_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]
_CR_BODY_TYPES = ["application/json", "application/yaml"]
_OPTIONS_KINDS = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions"}


class _Close(Exception):
    """The connection cannot be reused (body too large to drain, or broken framing)."""


class _Drop(Exception):
    """A fault cuts the connection: no answer at all."""


class KubeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-standin"
    sys_version = ""
    kube: KubeAPIServer  # set on the subclass the server builds

    # ---- Go-like handling of bytes that are not HTTP ----------------------------------------------------------
    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        phrase = {
            400: "Bad Request",
            414: "URI Too Long",
            431: "Request Header Fields Too Large",
            505: "HTTP Version Not Supported",
        }.get(code, "Bad Request")
        text = f"{code} {phrase}"
        raw = f"HTTP/1.1 {text}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n{text}"
        try:
            self.wfile.write(raw.encode())
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400)
            return False
        return True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # ---- the request cycle ---------------------------------------------------------------------------------------
    def _serve(self) -> None:
        url = urlsplit(self.path)
        self._query = {k: v for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self._status_sent = 0
        self._warnings: tuple[str, ...] = ()
        self._held: list[tuple[int, dict]] | None = None  # answers kept back while an "after" fault waits
        self._url = url
        self._verb = ""
        self._logged = False
        route: ResourceRoute | DiscoveryRoute | None = None
        verb = ""
        after: Fault | None = None
        try:
            body = self._drain_body()
            if self.kube.fault_control and faultcontrol.is_control_path(url.path):
                self._send_json(*faultcontrol.answer(self.kube.faults, self.command, url.path, body))
                return
            try:
                route = routes.parse(url.path, self.kube.registry)
            except APIError:
                route = None
            verb = self._verb = routes.kube_verb(self.command, route, self._flag("watch"))
            self._authorize(url.path)
            after = self._fault_before(route, verb, url.path)
            if body is None:
                raise too_large(MAX_BODY)
            if route is None:
                raise resource_not_found()
            self._dispatch(route, body)
        except APIError as err:
            if self._status_sent:  # mid-stream: the only honest signal left is closing
                self.close_connection = True
            else:
                self._send_json(err.code, err.body)
        except _Drop:
            self.close_connection = True
        except _Close:
            self.close_connection = True
            if not self._status_sent:
                self._send_json(413, too_large(MAX_BODY).body)
        except OSError:
            self.close_connection = True
        except Exception as exc:  # a bug in the stand-in must surface as a 500, as it would from an apiserver
            if self._status_sent:
                self.close_connection = True
            else:
                self._send_json(500, status(500, f"Internal error occurred: {type(exc).__name__}: {exc}"))
        finally:
            if after is not None:
                self._fault_after(after, route, verb, url.path)
            self._log(self._status_sent)

    # ---- authentication and authorization (off unless the server has them) ------------------------------------
    def _peer_identity(self) -> tuple[str, tuple[str, ...]] | None:
        getpeercert = getattr(self.connection, "getpeercert", None)
        peer = getpeercert() if getpeercert is not None else None
        return subject_identity(peer) if peer else None

    def _authorize(self, path: str) -> UserInfo | None:
        """401 for a request without a valid credential, 403 for one RBAC denies (auth.py, rbac.py); before
        routing and faults, as kube-apiserver's filters run before its handlers."""
        authenticator, authorizer = self.kube.authenticator, self.kube.authorizer
        if authenticator is None:
            return None
        user = authenticator.authenticate(self.headers.get("Authorization"), self._peer_identity())
        if user is None:
            raise APIError(401, "Unauthorized")
        if authorizer is not None:
            attributes = rbac.request_attributes(self.command, path, self._flag("watch"))
            if not authorizer.allows(user, attributes):
                raise rbac.forbidden(user, attributes)
        return user

    # ---- faults ---------------------------------------------------------------------------------------------
    def _fault_before(self, route: ResourceRoute | DiscoveryRoute | None, verb: str, path: str) -> Fault | None:
        """Strikes a matching "before" fault now; returns an "after" one, holding the answers back until it strikes.

        A watch streams as it goes, so nothing can be held back: an "after" fault strikes it before, too."""
        fault = self.kube.faults.match(self.command, verb, path)
        if fault is None:
            return None
        if fault.when == "after" and verb != "watch":
            self._held = []
            return fault
        _strike(fault, route, verb, path)
        return None

    def _fault_after(self, fault: Fault, route: ResourceRoute | DiscoveryRoute | None, verb: str, path: str) -> None:
        held, self._held = self._held or [], None
        try:
            _strike(fault, route, verb, path)
            for code, body in held:  # a delay alone: the real answer, late
                self._send_json(code, body)
        except _Drop:
            self.close_connection = True
        except APIError as err:
            self._send_json(err.code, err.body)
        except OSError:  # the client gave up waiting
            self.close_connection = True

    def _drain_body(self) -> bytes | None:
        """Reads the whole body even when we will answer an error, so keep-alive framing stays right.

        Returns None when the body exceeded the apiserver's limit (already drained)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError as exc:
                    raise _Close from exc
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > _DRAIN_LIMIT:
                    raise _Close
                data = self.rfile.read(size)
                self.rfile.readline(1024)
                if total <= MAX_BODY:
                    chunks.append(data)
            return b"".join(chunks) if total <= MAX_BODY else None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise _Close from exc
        if length > MAX_BODY:
            if length > _DRAIN_LIMIT:
                raise _Close
            remaining = length
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    raise _Close
                remaining -= len(chunk)
            return None
        return self.rfile.read(length) if length else b""

    # ---- query helpers ----------------------------------------------------------------------------------------
    def _param(self, name: str) -> str | None:
        values = self._query.get(name)
        return values[-1] if values else None

    def _flag(self, name: str) -> bool:
        return (self._param(name) or "").lower() in ("true", "1")

    def _dry_run(self, body_options: dict | None = None) -> bool:
        values = list(self._query.get("dryRun", []))
        if body_options and isinstance(body_options.get("dryRun"), list):
            values += body_options["dryRun"]
        for value in values:
            if value != "All":
                raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
        return bool(values)

    def _content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _writer(self, route: ResourceRoute) -> Writer:
        """Who this write is recorded under in managedFields: `fieldManager`, else the User-Agent's product name.

        Checks the options as the apiserver does before it looks at the body: 422 naming Create/Update/PatchOptions."""
        manager = self._param("fieldManager") or ""
        causes = self._patch_option_causes(manager) if self.command == "PATCH" else []
        for reason, message in managedfields.field_manager_problems(manager):
            if reason == "FieldValueInvalid":
                message = f"Invalid value: {format_value(manager)}: {message}"
            causes.append(cause(reason, "fieldManager", message))
        if causes:
            raise invalid(_OPTIONS_KINDS[self.command], "meta.k8s.io", "", causes)
        if not manager:
            manager = managedfields.manager_from_user_agent(self.headers.get("User-Agent") or "")
        return Writer(manager, route.rt.api_version(route.version), route.subresource)

    def _patch_option_causes(self, manager: str) -> list[dict]:
        if self._content_type() == APPLY:
            if not manager:
                return [cause("FieldValueRequired", "fieldManager", "Required value: is required for apply patch")]
        elif "force" in self._query:
            return [cause("FieldValueForbidden", "force", "Forbidden: may not be specified for non-apply patch")]
        return []

    def _decode(self, body: bytes, rt: ResourceType, patch_types: list[str] | None = None) -> tuple[str, Any]:
        ctype = self._content_type()
        if patch_types is not None:
            if ctype not in patch_types:
                raise unsupported_media_type(BUILTIN_PATCH_TYPES if rt.builtin else CR_PATCH_TYPES)
        elif ctype in ("", "application/json", "*/*"):
            ctype = "application/json"
        elif ctype in ("application/yaml", "application/vnd.kubernetes.protobuf"):
            if ctype.endswith("protobuf"):
                raise APIError(415, "the stand-in does not decode protobuf; send application/json")
        else:
            raise unsupported_media_type(_BUILTIN_BODY_TYPES if rt.builtin else _CR_BODY_TYPES)
        if not body.strip():
            raise bad_request("the request body is empty: expected a JSON object")
        try:
            if ctype.endswith("yaml"):
                return ctype, yaml.safe_load(body)
            return ctype, json.loads(body)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc

    # ---- dispatch ---------------------------------------------------------------------------------------------
    def _dispatch(self, route: ResourceRoute | DiscoveryRoute, body: bytes) -> None:
        if isinstance(route, DiscoveryRoute):
            if self.command != "GET":
                raise method_not_allowed()
            self._send_json(200, self._discovery(route))
            return
        store = self.kube.store
        rt, version, ns, name = route.rt, route.version, route.namespace, route.name
        method = self.command
        if name is None:
            if method == "GET":
                if self._flag("watch"):
                    self._watch(route)
                else:
                    self._send_json(200, self._list(route))
                return
            if method == "POST":
                if rt.namespaced and ns is None:
                    raise method_not_allowed()
                writer = self._writer(route)
                _, obj = self._decode(body, rt)
                result = store.create(rt, version, ns, obj, self._dry_run(), writer=writer)
                self._warnings = result.warnings
                self._send_json(result.code, result.obj)
                return
            if method == "DELETE":
                self._delete_collection(route, body)
                return
            raise method_not_allowed()
        if method == "GET":
            obj = store.get(rt, ns or "", name)
            self._send_json(200, render(obj, rt, version))
        elif method == "PUT":
            writer = self._writer(route)
            _, obj = self._decode(body, rt)
            result = store.update(rt, version, ns, name, obj, self._dry_run(), route.subresource, writer=writer)
            self._warnings = result.warnings
            self._send_json(200, result.obj)
        elif method == "PATCH":
            writer = self._writer(route)
            ctype, patch = self._decode(body, rt, patch_types=BUILTIN_PATCH_TYPES + CR_PATCH_TYPES)
            dry_run = self._dry_run()
            result = store.patch(rt, version, ns, name, ctype, patch, dry_run, route.subresource, writer=writer)
            self._warnings = result.warnings
            self._send_json(200, result.obj)
        elif method == "DELETE" and route.subresource is None:
            self._delete(route, body)
        else:
            raise method_not_allowed()

    def _discovery(self, route: DiscoveryRoute) -> dict:
        registry = self.kube.registry
        if route.what == "version":
            return discovery.version_info(self.kube.seed.kubernetes_version)
        if route.what == "api":
            return discovery.core_versions()
        if route.what == "apis":
            return discovery.group_list(registry)
        doc = (
            discovery.group(registry, route.group)
            if route.what == "group"
            else discovery.resource_list(registry, route.group, route.version)
        )
        if doc is None:
            raise resource_not_found()
        return doc

    def _matcher(self, rt: ResourceType):
        labels = parse_label_selector(self._param("labelSelector"))
        fields = parse_field_selector(self._param("fieldSelector"), rt.field_selectors)
        return lambda obj: labels(obj["metadata"].get("labels") or {}) and fields(obj)

    def _list(self, route: ResourceRoute) -> dict:
        """A list as kube-apiserver serves it (API concepts, "Retrieving large results sets in chunks" and
        "Resource versions"): `limit` gives pages read from one etcd revision, each with a `continue` token and,
        without selectors, `remainingItemCount`; a token whose revision is compacted gives 410 Expired with a token
        to go on from the current state (an inconsistent list); `resourceVersion=0` is served by the watch cache,
        which ignores `limit`."""
        rt, version = route.rt, route.version
        match = self._matcher(rt)
        store = self.kube.store
        limit = self._limit()
        token = self._param("continue")
        requested_rv = self._param("resourceVersion")
        if token:
            if requested_rv:
                raise bad_request("specifying resource version is not allowed when using continue")
            rv, start = _decode_continue(token)
            if rv == -1:  # the token a 410 gave: the rest of the list, read from the current state
                everything, rv = store.list_snapshot(rt, route.namespace)
            else:
                everything = store.at_revision(rt, route.namespace, rv)
                if everything is None:
                    error = APIError(410, EXPIRED_CONTINUE, "Expired")
                    error.body["metadata"]["continue"] = _encode_continue(-1, start)
                    raise error
            items = [o for o in everything if _key(o) > start and match(o)]
        elif requested_rv == "0" or not limit:
            items, rv = store.list(rt, route.namespace, match)
            limit = 0  # the watch cache serves rv=0 whole, whatever the limit
        else:
            everything, rv = store.list_snapshot(rt, route.namespace)
            items = [o for o in everything if match(o)]
        meta: dict = {"resourceVersion": str(rv)}
        if not rt.builtin:
            meta = {"continue": "", **meta}
        if limit and len(items) > limit:
            meta["continue"] = _encode_continue(rv, _key(items[limit - 1]))
            if not (self._param("labelSelector") or self._param("fieldSelector")):
                meta["remainingItemCount"] = len(items) - limit  # unknown with selectors: left unset
            items = items[:limit]
        if rt.builtin:
            rendered = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in items]
        else:
            rendered = [render(o, rt, version) for o in items]
        return {
            "apiVersion": rt.api_version(version),
            "kind": rt.list_kind,
            "metadata": meta,
            "items": rendered,
        }

    def _limit(self) -> int:
        text = self._param("limit")
        if not text:
            return 0
        try:
            return max(int(text), 0)
        except ValueError:
            raise bad_request(f"limit: Invalid value: {text!r}: must be an integer") from None

    def _delete_options(self, body: bytes) -> dict:
        if not body.strip():
            return {}
        try:
            options = json.loads(body)
        except ValueError as exc:
            raise bad_request(f"couldn't decode DeleteOptions: {exc}") from exc
        if not isinstance(options, dict):
            raise bad_request("DeleteOptions must be an object")
        return options

    def _delete(self, route: ResourceRoute, body: bytes) -> None:
        rt = route.rt
        options = self._delete_options(body)
        dry_run = self._dry_run(options)
        obj, pending = self.kube.store.delete(
            rt, route.namespace, route.name or "", options.get("preconditions"), dry_run
        )
        code = 202 if pending else 200
        if rt.returns_deleted_object or (rt.builtin and rt.kind == "Namespace") or pending:
            self._send_json(code, render(obj, rt, route.version))
            return
        details = {"name": obj["metadata"]["name"]}
        if rt.group:
            details["group"] = rt.group
        details.update(kind=rt.plural, uid=obj["metadata"]["uid"])
        self._send_json(code, success(details))

    def _delete_collection(self, route: ResourceRoute, body: bytes) -> None:
        options = self._delete_options(body)
        dry_run = self._dry_run(options)
        items, _ = self.kube.store.list(route.rt, route.namespace, self._matcher(route.rt))
        for obj in items:
            meta = obj["metadata"]
            try:
                self.kube.store.delete(route.rt, meta.get("namespace"), meta["name"], None, dry_run)
            except APIError as err:
                if err.code != 404:
                    raise
        self._send_json(200, success({}))

    def _watch(self, route: ResourceRoute) -> None:
        match = self._matcher(route.rt)
        timeout = self._param("timeoutSeconds")
        try:
            timeout_s = float(timeout) if timeout else None
        except ValueError as exc:
            raise bad_request(f"invalid timeoutSeconds: {timeout}") from exc
        self._log(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self._status_sent = 200

        def emit(event: dict) -> None:
            line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()

        try:
            watch.stream(
                self.kube.store,
                route.rt,
                route.version,
                route.namespace,
                match,
                self._param("resourceVersion"),
                timeout_s,
                self._flag("allowWatchBookmarks"),
                self.kube.bookmark_interval,
                emit,
            )
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    # ---- output -----------------------------------------------------------------------------------------------
    def _log(self, code: int) -> None:
        """Logs the request once, before its answer leaves, so a client that has read the answer finds it logged.

        A request that never gets an answer (a dropped connection) is logged with status 0 when it ends."""
        if not self._logged:
            self._logged = True
            self.kube.requests.add(RequestRecord(self.command, self._url.path, self._url.query, code, self._verb))

    def _send_json(self, code: int, body: dict) -> None:
        if self._held is not None:
            self._held.append((code, body))
            return
        data = json.dumps(body, separators=(",", ":")).encode()
        self._log(code)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for warning in self._warnings:
            self.send_header("Warning", "299 - " + json.dumps(warning))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._status_sent = code


def _strike(fault: Fault, route: ResourceRoute | DiscoveryRoute | None, verb: str, path: str) -> None:
    if fault.delay:
        time.sleep(fault.delay)
    if fault.drop:
        raise _Drop
    if fault.status is not None:
        raise _fault_error(fault, route, verb, path)


def _fault_error(fault: Fault, route: ResourceRoute | DiscoveryRoute | None, verb: str, path: str) -> APIError:
    code = fault.status or 500
    if code == 401:
        return APIError(401, fault.message or "Unauthorized")
    if code == 403:
        if isinstance(route, ResourceRoute):
            rt = route.rt
            subject = f'{rt.plural} "{route.name}"' if route.name else rt.plural
            scope = f'in the namespace "{route.namespace}"' if route.namespace else "at the cluster scope"
            message = fault.message or (
                f'{subject} is forbidden: User "{fault.user}" cannot {verb or "get"} resource "{rt.plural}" '
                f'in API group "{rt.group}" {scope}'
            )
            details: dict = {}
            if route.name:
                details["name"] = route.name
            if rt.group:
                details["group"] = rt.group
            details["kind"] = rt.plural
            return APIError(403, message, details=details)
        return APIError(403, fault.message or f'forbidden: User "{fault.user}" cannot get path "{path}"', details={})
    if code == 500:
        message = fault.message or "injected fault"
        return APIError(500, f"Internal error occurred: {message}", details={"causes": [{"message": message}]})
    return APIError(code, fault.message or f"injected fault: {code}")


# kube-apiserver's message (staging/src/k8s.io/apiserver/pkg/storage/etcd3) when a continue token's revision is gone.
EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of the "
    "results. Continuing with the provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may show up in the list."
)


def _key(obj: dict) -> tuple[str, str]:
    return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _encode_continue(rv: int, start: tuple[str, str]) -> str:
    """Opaque to clients; like the apiserver's: the revision to read and the last key served (rv -1: the latest)."""
    state = {"v": "meta.k8s.io/v1", "rv": rv, "start": list(start)}
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token.encode()))
        start = tuple(str(part) for part in state["start"])
        if state.get("v") != "meta.k8s.io/v1" or len(start) != 2:
            raise ValueError("unknown version")
        return int(state["rv"]), start
    except (ValueError, KeyError, TypeError) as exc:
        raise bad_request(f"continue key is not valid: {exc}") from None
