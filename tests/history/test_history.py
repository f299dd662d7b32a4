"""The configuration history through the real collector against the stand-in: what the timelines and the Policies
page "as of" a past time show, what unchanged collections add (nothing), and how retention trims."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.clusters.models import Cluster
from apps.history.models import Change, HistoryState, Kind, Tracked, Version
from apps.history.services import Observed, record, record_snapshot, versions_as_of
from apps.mesh.services import collect_and_record
from tests.helpers import HOSTILE, custom_api, set_bookstore_backends

ACCESS = ("access.smi-spec.io", "v1alpha3")
SPECS = ("specs.smi-spec.io", "v1alpha4")


def _collect(cluster) -> None:
    _run, error = collect_and_record(cluster)
    assert error is None, error


def _thief_target(**metadata: object) -> dict:
    """A TrafficTarget letting bookthief buy books from bookstore (the demo's allow-bookthief variant)."""
    return {
        "apiVersion": "access.smi-spec.io/v1alpha3",
        "kind": "TrafficTarget",
        "metadata": {"name": "bookthief-to-bookstore", "namespace": "bookstore", **metadata},
        "spec": {
            "destination": {"kind": "ServiceAccount", "name": "bookstore", "namespace": "bookstore"},
            "rules": [{"kind": "HTTPRouteGroup", "name": "bookstore-service-routes", "matches": ["buy-a-book"]}],
            "sources": [{"kind": "ServiceAccount", "name": "bookthief", "namespace": "bookthief"}],
        },
    }


def _changes(html: str) -> list[str]:
    """The timeline's entries, newest first, as "<kind> <ns>/<name> <change>"."""
    return re.findall(r'data-change="([^"]+)"', html)


def _as_of(when) -> str:
    return quote(when.isoformat())


def test_it_shows_a_traffic_target_added_then_removed_and_the_policy_as_of_a_time_between(
    client, viewer, kubeapi, bookstore
):
    custom = custom_api(kubeapi)
    custom.create_namespaced_custom_object(*ACCESS, "bookstore", "traffictargets", _thief_target())
    _collect(bookstore)
    custom.delete_namespaced_custom_object(*ACCESS, "bookstore", "traffictargets", "bookthief-to-bookstore")
    _collect(bookstore)
    client.force_login(viewer)

    html = client.get("/history/").content.decode()
    mine = [c for c in _changes(html) if "bookthief-to-bookstore" in c]
    assert mine == [
        "TrafficTarget bookstore/bookthief-to-bookstore deleted",
        "TrafficTarget bookstore/bookthief-to-bookstore created",
    ]
    added, removed = (html.index(f'data-change="{c}"') for c in reversed(mine))
    assert removed < added  # newest first
    created_entry = html[added : html.index("</li>", added)]
    assert '<span class="add">+    name: bookthief</span>' in created_entry
    assert '<span class="add">+    - buy-a-book</span>' in created_entry
    deleted_entry = html[removed : html.index("</li>", removed)]
    assert '<span class="del">-    name: bookthief</span>' in deleted_entry and 'class="add"' not in deleted_entry
    assert 'href="/history/traffictarget/bookstore/bookthief-to-bookstore/"' in html

    between = Version.objects.get(name="bookthief-to-bookstore", change=Change.CREATED).recorded_at
    ask = "&from=bookthief/bookthief&to=bookstore/bookstore-v1"  # bookstore-v1's pods run as bookstore/bookstore
    past = client.get(f"/policies/?as_of={_as_of(between)}{ask}").content.decode()
    assert 'class="banner past-view"' in past and "Past view" in past and "Back to now" in past
    assert 'data-pair="bookthief/bookthief→bookstore/bookstore"' in past
    assert 'data-answer="yes"' in past and "TrafficTarget bookstore/bookthief-to-bookstore via" in past

    now = client.get(f"/policies/?{ask[1:]}").content.decode()
    assert "past-view" not in now
    assert 'data-pair="bookthief/bookthief→bookstore/bookstore"' not in now
    assert 'data-answer="no"' in now

    before = client.get(f"/policies/?as_of={_as_of(between - timedelta(milliseconds=1))}{ask}").content.decode()
    assert "past-view" in before and 'data-answer="no"' in before


def test_it_adds_nothing_when_a_collection_finds_no_change(kubeapi, bookstore, django_assert_max_num_queries):
    counts = (Version.objects.count(), Tracked.objects.count())
    assert counts[0] > 0 and counts[0] == counts[1]  # the first collection: one version per object
    assert set(Version.objects.values_list("kind", flat=True)) == set(Kind.values)
    assert all(Version.objects.values_list("baseline", flat=True))

    _collect(bookstore)
    _collect(bookstore)

    assert (Version.objects.count(), Tracked.objects.count()) == counts
    with django_assert_max_num_queries(7):  # the MeshState, the heads, one digest list per kind, the history state
        assert record_snapshot(bookstore) == []


def test_it_keeps_a_weight_change_with_its_diff_and_who_made_it(client, viewer, kubeapi, bookstore):
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 50}, {"service": "bookstore-v2", "weight": 50}]
    )
    _collect(bookstore)
    client.force_login(viewer)

    splits = client.get("/splits/").content.decode()
    assert 'href="/history/split/bookstore/bookstore-split/"' in splits
    html = client.get("/history/split/bookstore/bookstore-split/").content.decode()

    assert _changes(html) == [
        "TrafficSplit bookstore/bookstore-split changed",
        "TrafficSplit bookstore/bookstore-split created",
    ]
    assert '<span class="del">-    weight: 100</span>' in html and '<span class="add">+    weight: 50</span>' in html
    assert '<span class="add">+  - service: bookstore-v2</span>' in html
    assert "Last written by <strong>" in html and "changed outside Meshboard" in html
    assert "Present in the latest collection." in html and "first collected" in html


def test_it_shows_what_names_a_service(client, viewer, kubeapi, bookstore):
    client.force_login(viewer)

    html = client.get("/history/service/bookstore/bookstore/").content.decode()

    assert "TrafficSplit bookstore/bookstore-split created" in _changes(html)
    assert "TrafficTarget bookstore/bookstore created" in _changes(html)
    assert "TrafficTarget bookwarehouse/bookstore-access-bookwarehouse created" in _changes(html)  # bookstore calls
    assert not [c for c in _changes(html) if "mysql" in c or "bookbuyer" in c]
    assert "service accounts (bookstore/bookstore, bookstore/bookstore-v2, from the latest snapshot)" in html


def test_it_shows_the_mesh_config_mode_change_and_the_mode_as_of_before_it(client, viewer, kubeapi, bookstore):
    patch = {"spec": {"traffic": {"enablePermissiveTrafficPolicyMode": True}}}
    custom_api(kubeapi).patch_namespaced_custom_object(
        "config.openservicemesh.io", "v1alpha2", "osm-system", "meshconfigs", "osm-mesh-config", patch
    )
    _collect(bookstore)
    client.force_login(viewer)

    html = client.get("/history/?kind=MeshConfig").content.decode()
    assert _changes(html) == [
        "MeshConfig osm-system/osm-mesh-config changed",
        "MeshConfig osm-system/osm-mesh-config created",
    ]
    assert '<span class="del">-    enablePermissiveTrafficPolicyMode: false</span>' in html
    assert '<span class="add">+    enablePermissiveTrafficPolicyMode: true</span>' in html

    changed = Version.objects.get(kind=Kind.MESH_CONFIG, change=Change.CHANGED).recorded_at
    before = client.get(f"/policies/?as_of={_as_of(changed - timedelta(milliseconds=1))}").content.decode()
    assert 'data-mode="smi"' in before and "past-view" in before
    assert 'data-mode="permissive"' in client.get("/policies/").content.decode()


def test_it_links_each_traffic_target_to_its_history(client, viewer, bookstore):
    client.force_login(viewer)

    html = client.get("/policies/").content.decode()

    assert 'href="/history/traffictarget/bookstore/bookstore/"' in html
    assert 'href="/history/traffictarget/bookwarehouse/mysql/"' in html and 'href="/history/"' in html


@pytest.mark.parametrize(
    ("as_of", "says"),
    [
        ("last-tuesday", "is not a time: write an ISO 8601 time"),
        ("2999-01-01T00:00:00Z", "is in the future"),
        ("946684800", "starts at"),  # 2000-01-01, before the history began
    ],
)
def test_it_explains_a_bad_as_of_and_shows_the_present(client, viewer, bookstore, as_of, says):
    client.force_login(viewer)

    html = client.get(f"/policies/?as_of={as_of}").content.decode()

    assert 'class="banner problem as-of-error"' in html and says in html and "Showing the present." in html
    assert "past-view" not in html and 'data-mode="smi"' in html
    assert 'data-target="bookstore/bookstore"' in html


def test_it_reads_unix_seconds_as_a_time(client, viewer, bookstore):
    client.force_login(viewer)
    now = timezone.now().timestamp()

    html = client.get(f"/policies/?as_of={now:.3f}").content.decode()

    assert "past-view" in html and 'data-pair="bookbuyer/bookbuyer→bookstore/bookstore"' in html


def test_it_shows_hostile_strings_in_specs_as_text(client, viewer, kubeapi, bookstore):
    custom = custom_api(kubeapi)
    target = _thief_target(annotations={"note": HOSTILE})
    target["spec"]["sources"][0]["name"] = HOSTILE
    custom.create_namespaced_custom_object(*ACCESS, "bookstore", "traffictargets", target)
    routes = {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": "hostile-routes", "namespace": "bookstore"},
        "spec": {"matches": [{"name": HOSTILE, "pathRegex": HOSTILE, "methods": ["GET"]}]},
    }
    custom.create_namespaced_custom_object(*SPECS, "bookstore", "httproutegroups", routes)
    _collect(bookstore)
    client.force_login(viewer)

    for url in ("/history/", "/history/traffictarget/bookstore/bookthief-to-bookstore/"):
        html = client.get(url).content.decode()
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "<img src=x" not in html and HOSTILE not in html
    html = client.get("/history/service/bookstore/bookstore/").content.decode()
    assert "TrafficTarget bookstore/bookthief-to-bookstore created" in _changes(html)
    assert "<img src=x" not in html


def test_it_pages_the_timeline_newest_first(client, viewer, bookstore):
    start = timezone.now()
    for i in range(60):
        content = {"spec": {"matches": [{"name": f"m{i}"}]}}
        record(
            bookstore,
            {},
            [Observed(Kind.HTTP_ROUTE_GROUP, "bookstore", "paged", content)],
            start + timedelta(seconds=i),
        )
    client.force_login(viewer)

    first = client.get("/history/httproutegroup/bookstore/paged/").content.decode()
    second = client.get("/history/httproutegroup/bookstore/paged/?page=2").content.decode()

    assert len(_changes(first)) == 50 and len(_changes(second)) == 10
    assert "page 1 of 2 · 60 changes" in first and 'rel="next"' in first and "?page=2" in first
    assert "+  - name: m59" in first and "+  - name: m0" in second
    assert "-  - name: m58" in first


def test_it_bounds_the_timeline_by_from_and_to(client, viewer, bookstore):
    start = timezone.now() - timedelta(hours=3)
    for i in range(3):
        content = {"spec": {"matches": [{"name": f"m{i}"}]}}
        record(bookstore, {}, [Observed(Kind.HTTP_ROUTE_GROUP, "bookstore", "b", content)], start + timedelta(hours=i))
    client.force_login(viewer)

    since, until = _as_of(start + timedelta(minutes=30)), _as_of(start + timedelta(minutes=90))
    url = f"/history/?kind=HTTPRouteGroup&from={since}&to={until}"
    html = client.get(url).content.decode()

    assert _changes(html) == ["HTTPRouteGroup bookstore/b changed"] and "m1" in html
    assert "not a time" in client.get("/history/?from=soon").content.decode()


def test_it_trims_versions_older_than_the_days_kept_but_keeps_the_state_they_lead_to(client, viewer, db):
    cluster = Cluster.objects.create(name="old", kubeconfig_path="/nonexistent")
    now = timezone.now()

    def seen(days_ago: float, *objects: tuple[str, int]) -> None:
        observed = [Observed(Kind.TCP_ROUTE, "db", n, {"spec": {"matches": {"ports": [p]}}}) for n, p in objects]
        present = {Kind.TCP_ROUTE: {("db", n) for n, _ in objects}}
        record(cluster, present, observed, now - timedelta(days=days_ago))

    seen(40, ("kept", 1), ("gone", 1))
    seen(35, ("kept", 2))  # "gone" deleted 35 days ago
    seen(10, ("kept", 3))
    assert Version.objects.count() == 5

    call_command("trim_history", days=30)

    kept = sorted(Version.objects.values_list("name", "change", "content__spec__matches__ports"))
    assert kept == [("kept", "changed", [2]), ("kept", "changed", [3])]
    assert list(Tracked.objects.values_list("name", "versions")) == [("kept", 2)]
    (then,) = versions_as_of(cluster, now - timedelta(days=29), [Kind.TCP_ROUTE])
    assert then.content["spec"]["matches"]["ports"] == [2]
    client.force_login(viewer)
    too_old = client.get(f"/policies/?cluster=old&as_of={_as_of(now - timedelta(days=31))}").content.decode()
    assert "starts at" in too_old and "past-view" not in too_old
    assert (
        "past-view" in client.get(f"/policies/?cluster=old&as_of={_as_of(now - timedelta(days=29))}").content.decode()
    )


def test_it_keeps_at_most_the_maximum_versions_per_object(settings, kubeapi, bookstore):
    settings.MESHBOARD_HISTORY_MAX_VERSIONS = 3
    for weight in (90, 80, 70, 60):
        set_bookstore_backends(
            kubeapi,
            [{"service": "bookstore-v1", "weight": weight}, {"service": "bookstore-v2", "weight": 100 - weight}],
        )
        _collect(bookstore)

    split = Version.objects.filter(kind=Kind.TRAFFIC_SPLIT).order_by("id")
    assert [v["backends"][0]["weight"] for v in split.values_list("content__spec", flat=True)] == [80, 70, 60]
    assert split.first().previous["spec"]["backends"][0]["weight"] == 90  # its diff survives the trim
    tracked = Tracked.objects.get(kind=Kind.TRAFFIC_SPLIT)
    assert tracked.versions == 3 and tracked.complete_from == split.first().recorded_at
    assert HistoryState.objects.get(cluster=bookstore).trimmed_at is not None  # the receiver's trim by age ran


def test_it_lets_only_viewers_see_the_history(client, nobody, bookstore):
    assert client.get("/history/").status_code == 302
    client.force_login(nobody)
    assert client.get("/history/").status_code == 403
    assert client.get("/history/split/bookstore/bookstore-split/").status_code == 403


def test_it_answers_404_for_a_kind_it_does_not_keep(client, viewer, bookstore):
    client.force_login(viewer)

    assert client.get("/history/pod/bookstore/x/").status_code == 404
