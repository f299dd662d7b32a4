"""`python -m lab.bench history`: the configuration history's storage on the synthetic mesh (`--services 1000`).

The policy and split objects of the synthetic mesh (TrafficSplits, TrafficTargets, HTTPRouteGroups, TCPRoutes and
the MeshConfig, as the collector decodes them) are recorded through apps.history.services.record, as the receiver
does after each collection, for 1,000 collections 15 s apart (`--runs` is ignored: the issue fixes the count), with
1 % of the policy and split objects changed before each one (a split's weights, a target's sources, a route's
methods, by turns). No stand-in: the collection itself is measured by `python -m lab.bench collect`.

Reported: the versions kept, the database size (SQLite, after VACUUM: the history's tables by dbstat when SQLite has
it, else the whole file), the time of one record() call, and what a trim by age (MESHBOARD_HISTORY_DAYS, its cut put
halfway through the run) deletes and leaves.
"""

from __future__ import annotations

import copy
import random
import statistics
import tempfile
import time
from datetime import timedelta

from lab.benchkit import p95, setup_django

COLLECTIONS = 1000
CHANGED_SHARE = 0.01
POLL_SECONDS = 15


def _objects(services: int) -> list[dict]:
    from lab.seeds.synthetic import synthetic_manifests
    from lab.synthetic import generate

    kinds = {"TrafficSplit", "TrafficTarget", "HTTPRouteGroup", "TCPRoute", "MeshConfig"}
    return [o for o in synthetic_manifests(generate(services)) if o.get("kind") in kinds]


def _observe(obj: dict, when: str) -> object:
    """The observation the receiver would make of the object's snapshot row (MeshConfig: of the MeshState)."""
    from apps.history.services import MESH_CONFIG_NAME, Observed, mesh_config_content, observe
    from apps.mesh import decode
    from apps.mesh.models import MeshState

    kind = obj["kind"]
    if kind == "MeshConfig":
        state = MeshState(meshconfig=obj.get("spec") or {}, meshconfig_api_version=obj.get("apiVersion", ""))
        return Observed(kind, obj["metadata"].get("namespace", ""), MESH_CONFIG_NAME, mesh_config_content(state))
    row = {
        "TrafficSplit": decode.traffic_split_row,
        "TrafficTarget": decode.traffic_target_row,
        "HTTPRouteGroup": decode.http_route_group_row,
        "TCPRoute": decode.tcp_route_row,
    }[kind](obj)
    if kind == "TrafficSplit":  # as a controller's write leaves it
        row["managers"] = [{"manager": "flagger", "operation": "Update", "time": when}]
    return observe(kind, row)


def _change(obj: dict, rng: random.Random, step: int) -> None:
    """One edit, as a person or a controller would make it."""
    spec = obj.setdefault("spec", {})
    kind = obj["kind"]
    if kind == "TrafficSplit":
        canary = rng.randrange(0, 101, 5)
        backends = spec.get("backends") or []
        if len(backends) >= 2:
            backends[0]["weight"], backends[1]["weight"] = 100 - canary, canary
    elif kind == "TrafficTarget":
        sources = spec.setdefault("sources", [])
        extra = {"kind": "ServiceAccount", "name": f"caller-{step % 7}", "namespace": obj["metadata"]["namespace"]}
        if extra in sources:
            sources.remove(extra)
        else:
            sources.append(extra)
    elif kind == "HTTPRouteGroup":
        for match in spec.get("matches") or []:
            match["methods"] = ["GET"] if match.get("methods") != ["GET"] else ["*"]
    elif kind == "TCPRoute":
        ports = (spec.setdefault("matches", {})).setdefault("ports", [])
        spec["matches"]["ports"] = ports[:1] if len(ports) > 1 else [*ports, 5433]
    else:  # the MeshConfig
        traffic = spec.setdefault("traffic", {})
        traffic["enableEgress"] = not traffic.get("enableEgress", False)


def _size(connection: object) -> tuple[int, str]:
    """Bytes of the history's tables and indexes (dbstat), else of the whole database file; and which it is."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM")
        try:
            cursor.execute(
                "SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                "(SELECT name FROM sqlite_master WHERE tbl_name LIKE 'history!_%' ESCAPE '!')"
            )
            return int(cursor.fetchone()[0] or 0), "history tables and indexes (dbstat)"
        except Exception:
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute("PRAGMA page_size")
            return pages * cursor.fetchone()[0], "whole SQLite file"


def bench_history(services: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(tmp)
        from django.conf import settings
        from django.db import connection
        from django.utils import timezone

        from apps.clusters.models import Cluster
        from apps.history.models import Version
        from apps.history.services import record, trim_by_age

        cluster = Cluster.objects.create(name="bench", kubeconfig_path="/nonexistent")
        objects = _objects(services)
        rng = random.Random(24)
        start = timezone.now() - timedelta(seconds=POLL_SECONDS * COLLECTIONS)
        present: dict[str, set[tuple[str, str]]] = {}
        for obj in objects:
            kind, meta = obj["kind"], obj["metadata"]
            name = meta["name"] if kind != "MeshConfig" else "osm-mesh-config"
            present.setdefault(kind, set()).add((meta.get("namespace", ""), name))
        per_run = max(1, round(len(objects) * CHANGED_SHARE))
        times, first = [], 0.0
        for step in range(COLLECTIONS):
            at = start + timedelta(seconds=POLL_SECONDS * step)
            stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
            if step == 0:
                changed = objects
            else:
                changed = rng.sample(objects, per_run)
                for obj in changed:
                    _change(obj, rng, step)
            observed = [_observe(copy.deepcopy(obj), stamp) for obj in changed]
            began = time.perf_counter()
            record(cluster, present, observed, at)
            took = time.perf_counter() - began
            if step == 0:
                first = took
            else:
                times.append(took)
        versions = Version.objects.count()
        size, what = _size(connection)
        # The trim by age, its cut halfway through the run: what MESHBOARD_HISTORY_DAYS does to a month-old history.
        days = settings.MESHBOARD_HISTORY_DAYS
        halfway = start + timedelta(seconds=POLL_SECONDS * COLLECTIONS / 2)
        began = time.perf_counter()
        deleted = trim_by_age(cluster, days=days, now=halfway + timedelta(days=days))
        trim_seconds = time.perf_counter() - began
        after, _ = _size(connection)

    print(
        f"## history: {COLLECTIONS} collections of synthetic --services {services}, "
        f"{CHANGED_SHARE:.0%} of its {len(objects)} policy and split objects changed each time (SQLite)"
    )
    print(
        f"- versions kept: {versions} ({len(objects)} first seen, then {per_run} objects edited before each of "
        f"{COLLECTIONS - 1} collections; an edit that restores the content already kept adds none)"
    )
    print(f"- storage: {size / 1e6:.1f} MB ({what}, after VACUUM); {size / versions:.0f} bytes per version")
    print(
        f"- record() per collection: median {statistics.median(times) * 1000:.1f} ms, "
        f"p95 {p95(times) * 1000:.1f} ms (first collection, every object new: {first * 1000:.0f} ms)"
    )
    print(
        f"- trim by age (cut halfway through the run): {deleted} versions deleted in {trim_seconds * 1000:.0f} ms, "
        f"{after / 1e6:.1f} MB left"
    )
