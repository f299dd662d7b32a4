"""The lab controller: watches the stand-in's SMI objects, OSM's policy API objects (IngressBackend, Egress,
UpstreamTrafficSetting, Retry), the Ingresses and the MeshConfig, and rewrites the sidecars' (and the ingress
controller's) config files.

One thread per kind lists, then watches from the list's resourceVersion (bookmarks on); when the server answers 410
Gone it lists again and carries on. A kind the server does not serve (404: its CRD is not installed) is empty and not
watched. Any change marks the policy dirty; the render thread re-renders every sidecar
within `debounce` seconds and each sidecar writes only the files that changed, by atomic rename, so Envoy applies
them without a restart (well within a second).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from lab.mesh.topology import Policy

log = logging.getLogger("lab.mesh.controller")

# (policy attribute, group, version, plural)
WATCHED = (
    ("splits", "split.smi-spec.io", "v1alpha2", "trafficsplits"),
    ("targets", "access.smi-spec.io", "v1alpha3", "traffictargets"),
    ("http_route_groups", "specs.smi-spec.io", "v1alpha4", "httproutegroups"),
    ("tcp_routes", "specs.smi-spec.io", "v1alpha4", "tcproutes"),
    ("mesh_configs", "config.openservicemesh.io", "v1alpha2", "meshconfigs"),
    ("ingress_backends", "policy.openservicemesh.io", "v1alpha1", "ingressbackends"),
    ("egresses", "policy.openservicemesh.io", "v1alpha1", "egresses"),
    ("upstream_traffic_settings", "policy.openservicemesh.io", "v1alpha1", "upstreamtrafficsettings"),
    ("retries", "policy.openservicemesh.io", "v1alpha1", "retries"),
    ("ingresses", "networking.k8s.io", "v1", "ingresses"),
)


def _key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class LabController:
    """`LabController(api_client, apply).start()`: `apply(policy)` is called with a fresh copy after each change."""

    def __init__(
        self,
        api_client: Any,
        apply: Callable[[Policy], None],
        *,
        debounce: float = 0.05,
        watch_timeout: int = 30,
        bookmarks: bool = True,
    ) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)
        self._apply = apply
        self._debounce = debounce
        self._watch_timeout = watch_timeout
        self._bookmarks = bookmarks
        self.policy = Policy()
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.relists: dict[str, int] = {}  # plural -> lists done (1 + one per 410 or broken watch)
        self.absent: set[str] = set()  # plurals the server does not serve (404)
        self.applied = 0  # how many times the policy was applied
        self.last_applied: float | None = None
        self.errors: list[str] = []

    # ---- public ----------------------------------------------------------------------------------------------
    def load(self) -> Policy:
        """List everything once (synchronously) and return the policy; `start` then watches from there."""
        from kubernetes.client.rest import ApiException

        self._rvs = {}
        for attr, group, version, plural in WATCHED:
            try:
                self._rvs[plural] = self._list(attr, group, version, plural)
            except ApiException as err:
                if err.status != 404:
                    raise
                self.absent.add(plural)
        return self.snapshot()

    def start(self) -> LabController:
        if not hasattr(self, "_rvs"):
            self.load()
        for spec in WATCHED:
            if spec[3] in self.absent:
                continue
            t = threading.Thread(target=self._watch_loop, args=spec, name=f"watch-{spec[3]}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._render_loop, name="lab-render", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        # One deadline for all: a watch blocked in its long poll ends only with it (the threads are daemons), and
        # joining each for 2 s made every stop take 10 s.
        deadline = time.monotonic() + 2
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    def snapshot(self) -> Policy:
        with self._lock:
            return copy.deepcopy(self.policy)

    # ---- internals -------------------------------------------------------------------------------------------
    def _list(self, attr: str, group: str, version: str, plural: str) -> str:
        result = self._custom.list_cluster_custom_object(group, version, plural, _request_timeout=10)
        with self._lock:
            setattr(self.policy, attr, {_key(o): o for o in result.get("items") or []})
        self.relists[plural] = self.relists.get(plural, 0) + 1
        return (result.get("metadata") or {}).get("resourceVersion", "")

    def _watch_loop(self, attr: str, group: str, version: str, plural: str) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        rv = self._rvs[plural]
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(
                    self._custom.list_cluster_custom_object,
                    group,
                    version,
                    plural,
                    resource_version=rv,
                    allow_watch_bookmarks=self._bookmarks,
                    timeout_seconds=self._watch_timeout,
                    _request_timeout=self._watch_timeout + 10,
                ):
                    if self._stop.is_set():
                        w.stop()
                        break
                    kind, obj = event["type"], event.get("raw_object") or event["object"]
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if kind == "BOOKMARK":
                        continue
                    with self._lock:
                        objects = getattr(self.policy, attr)
                        if kind == "DELETED":
                            objects.pop(_key(obj), None)
                        else:
                            objects[_key(obj)] = obj
                    self._dirty.set()
            except ApiException as err:
                if self._stop.is_set():
                    return
                if err.status != 410:
                    self.errors.append(f"{plural}: watch failed: {err.status} {err.reason}")
                    self._stop.wait(0.5)
                with contextlib.suppress(Exception):
                    rv = self._list(attr, group, version, plural)
                    self._dirty.set()
            except Exception as err:  # a dropped connection: list again after a short pause
                if self._stop.is_set():
                    return
                self.errors.append(f"{plural}: {type(err).__name__}: {err}")
                self._stop.wait(0.5)
                with contextlib.suppress(Exception):
                    rv = self._list(attr, group, version, plural)
                    self._dirty.set()

    def _render_loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            time.sleep(self._debounce)
            self._dirty.clear()
            try:
                self._apply(self.snapshot())
                self.applied += 1
                self.last_applied = time.time()
            except Exception as err:  # keep the last good config; say why
                log.exception("lab controller: could not apply the policy")
                self.errors.append(f"apply: {type(err).__name__}: {err}")
