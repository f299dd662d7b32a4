"""The /migrate/ page, its downloads and `manage.py export_istio`, as each persona and a CI pipeline see them."""

from __future__ import annotations

import io

import pytest
import yaml
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.mesh.models import MeshNamespace, SnapshotRow
from tests.helpers import HOSTILE, assert_shown_as_text


def test_it_sends_anonymous_users_to_the_login_page(client, db):
    for url in ("/migrate/", "/migrate/bundle.yaml", "/migrate/report.txt", "/migrate/bookstore/bundle.yaml"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_it_refuses_a_user_without_a_role(client, nobody, bookstore_cluster):
    client.force_login(nobody)
    assert client.get("/migrate/").status_code == 403
    assert client.get("/migrate/bundle.yaml").status_code == 403


def test_it_says_there_is_no_cluster(client, viewer):
    client.force_login(viewer)
    assert "No cluster yet." in client.get("/migrate/").content.decode()


def test_it_shows_per_namespace_what_is_generated_its_fidelity_the_differences_and_the_order(
    client, viewer, bookstore_cluster
):
    client.force_login(viewer)
    html = client.get("/migrate/?revision=asm-1-27").content.decode()
    assert 'aria-current="page">Migrate</a>' in html
    assert "istio.io/rev=asm-1-27" in html
    # The order: callees before callers, from the TrafficTargets.
    order = [html.index(f'href="#ns-{ns}"') for ns in ("bookwarehouse", "bookstore", "bookbuyer")]
    assert order == sorted(order)
    assert "No-mesh window." in html and "does not run on a cluster with the OSM add-on enabled" in html
    # Per namespace: objects, fidelity, differences.
    assert 'data-namespace="bookstore"' in html
    assert 'data-object="AuthorizationPolicy/meshboard-tt-bookstore"' in html
    assert 'data-object="VirtualService/meshboard-ts-bookstore-split"' in html
    assert 'data-level="narrower"' in html and "*a-book/new" in html
    assert "GET /a-booknew from bookbuyer/bookbuyer to bookstore/bookstore port 14001" in html
    assert 'data-explained="false"' not in html and 'data-unexplained="0"' in html
    # OSM's policy API is translated: its kinds with what they become, and each object's items in its namespace.
    for kind in ("Egress", "IngressBackend", "UpstreamTrafficSetting", "Retry"):
        assert f'data-kind="{kind}"' in html
    assert "not translated" not in html and 'data-outbound-policy="ALLOW_ANY"' in html
    for key in (
        "ib:bookstore/bookstore-http:bookstore:14001",
        "ib:bookstore/bookstore-mtls:bookstore-v1:14001",
        "ingress-controller:ingress-nginx/Deployment/ingress-nginx-controller",
        "egress:bookbuyer/bookbuyer-external",
        "egress-capture:bookbuyer/bookbuyer:80",
        "uts:bookstore/bookstore-rate-limit",
        "uts-rate:bookstore/bookstore-rate-limit",
        "retry:bookbuyer/bookbuyer-to-bookstore:bookstore/bookstore",
        "order:bookstore/Deployment/bookstore:ingress",
    ):
        assert f'data-key="{key}"' in html, key
    assert 'data-object="ServiceEntry/meshboard-egress-bookbuyer-external"' in html
    assert 'data-patch="Ingress bookstore/bookstore-mtls"' in html
    # Both broader findings come from the policy API (see test_equivalence): the page says export_istio fails.
    assert 'data-broader="true"' in html


def test_it_asks_an_aks_cluster_for_the_revision(client, viewer, bookstore_cluster):
    client.force_login(viewer)
    html = client.get("/migrate/").content.decode()
    assert "injects by revision" in html  # the bookstore seed runs on AKS-like nodes
    assert "istio-injection=enabled" in html


def test_it_refuses_a_bad_revision_with_the_reason(client, viewer, bookstore_cluster):
    client.force_login(viewer)
    response = client.get("/migrate/?revision=ASM 1.27")
    assert response.status_code == 400 and "is not a revision" in response.content.decode()
    assert client.get("/migrate/bundle.yaml?revision=ASM").status_code == 400


def test_it_downloads_the_bundle_per_namespace_and_as_one_file(client, viewer, bookstore_cluster):
    client.force_login(viewer)
    whole = client.get("/migrate/bundle.yaml?revision=asm-1-27")
    assert whole.status_code == 200 and whole["Content-Type"].startswith("application/yaml")
    assert 'filename="meshboard-istio-lab.yaml"' in whole["Content-Disposition"]
    docs = [d for d in yaml.safe_load_all(whole.content.decode()) if d]
    assert {d["kind"] for d in docs} == {
        "Namespace",
        "PeerAuthentication",
        "AuthorizationPolicy",
        "VirtualService",
        "DestinationRule",
        "ServiceEntry",
    }
    one = client.get("/migrate/bookstore/bundle.yaml?revision=asm-1-27")
    in_one = [d for d in yaml.safe_load_all(one.content.decode()) if d]
    assert in_one and {d["metadata"].get("namespace", d["metadata"]["name"]) for d in in_one} == {"bookstore"}
    assert client.get("/migrate/kube-system/bundle.yaml").status_code == 404
    report = client.get("/migrate/report.txt?revision=asm-1-27").content.decode()
    assert "Order to move namespaces in" in report and "OSM's policy API: 2 IngressBackends, 1 Egresses" in report


def test_it_shows_regexes_from_the_cluster_as_text(client, viewer, collected):
    def hostile(objects):
        for obj in objects:
            if obj["kind"] == "HTTPRouteGroup" and obj["metadata"]["name"] == "bookstore-service-routes":
                obj["spec"]["matches"][1]["pathRegex"] = HOSTILE

    collected(hostile)
    client.force_login(viewer)
    assert_shown_as_text(client.get("/migrate/").content.decode())


def test_it_gives_no_bundle_link_to_a_namespace_whose_name_breaks_the_rule(client, viewer, collected):
    # A name no apiserver accepts, as a hostile or broken snapshot could hold it: never put into a path.
    cluster, _server = collected()
    for model in (m for m in apps.get_models() if issubclass(m, SnapshotRow)):
        model.objects.filter(cluster=cluster, namespace="bookwarehouse").update(namespace="book/warehouse")
    MeshNamespace.objects.filter(cluster=cluster, name="bookwarehouse").update(name="book/warehouse")
    client.force_login(viewer)
    response = client.get("/migrate/?revision=asm-1-27")
    html = response.content.decode()
    assert response.status_code == 200 and 'data-namespace="book/warehouse"' in html
    assert "not a valid namespace name: only in the whole bundle" in html
    assert "/migrate/bookstore/bundle.yaml?" in html  # the valid ones keep theirs


# -- manage.py export_istio ---------------------------------------------------------------------------------------


def test_export_writes_the_bundle_to_stdout_and_the_report_to_stderr(bookstore_cluster):
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit):  # the bookstore is broader than OSM in two places (see below): written anyway
        call_command("export_istio", revision="asm-1-27", stdout=out, stderr=err)
    docs = [d for d in yaml.safe_load_all(out.getvalue()) if d]
    # 4 application namespaces (Namespace, PeerAuthentication, allow-nothing), 2 TrafficTarget policies in bookstore,
    # 2 in bookwarehouse, the split's VirtualService (with bookbuyer's retries); ingress-nginx, in the mesh without
    # injection: its PeerAuthentication, allow-nothing policy and the controller's DestinationRule (no Namespace
    # label); a policy per IngressBackend, the UpstreamTrafficSetting's DestinationRule, the Egress's ServiceEntry.
    assert len(docs) == 24
    assert "Fidelity:" in err.getvalue() and "apiVersion" not in err.getvalue()


def test_export_writes_files_with_output_and_one_namespace_with_namespace(bookstore_cluster, tmp_path):
    folder = tmp_path / "out"
    with pytest.raises(SystemExit):  # broader in two places (see below): the files are written anyway
        call_command("export_istio", cluster="lab", output=str(folder), stdout=io.StringIO(), stderr=io.StringIO())
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "bookbuyer.yaml",
        "bookstore.yaml",
        "bookthief.yaml",
        "bookwarehouse.yaml",
        "ingress-nginx.yaml",
        "meshboard-istio.yaml",
        "report.txt",
    ]
    assert "istio-injection: enabled" in (folder / "bookstore.yaml").read_text()  # no revision: upstream Istio
    out = io.StringIO()
    call_command("export_istio", namespace=["bookwarehouse"], stdout=out, stderr=io.StringIO())  # nothing broader
    assert {d["metadata"].get("namespace", "bookwarehouse") for d in yaml.safe_load_all(out.getvalue()) if d} == {
        "bookwarehouse"
    }
    with pytest.raises(CommandError, match="nothing to generate for namespace nowhere"):
        call_command("export_istio", namespace=["nowhere"], stdout=io.StringIO(), stderr=io.StringIO())


def test_export_exits_non_zero_when_anything_is_broader(collected):
    def opt_out(objects):
        for obj in objects:
            meta = obj["metadata"]
            if (
                obj["kind"] == "Pod"
                and meta.get("namespace") == "bookstore"
                and meta["name"].startswith("bookstore-v2")
            ):
                meta.setdefault("annotations", {})["openservicemesh.io/sidecar-injection"] = "disabled"

    collected(opt_out)
    err = io.StringIO()
    with pytest.raises(SystemExit) as caught:
        call_command("export_istio", stdout=io.StringIO(), stderr=err)
    assert caught.value.code == 3
    assert "[broader]" in err.getvalue() and "exit status 3" in err.getvalue()


def test_export_exits_non_zero_on_the_bookstore_for_what_its_policy_api_makes_broader(bookstore_cluster):
    err = io.StringIO()
    with pytest.raises(SystemExit) as caught:
        call_command("export_istio", stdout=io.StringIO(), stderr=err)
    assert caught.value.code == 3
    report = err.getvalue()
    assert "[broader] Egress bookbuyer/bookbuyer-external: HTTP port 80 of bookbuyer/bookbuyer" in report
    assert "[broader] ingress routes on Deployment bookstore/bookstore" in report
    assert "NOT EXPLAINED" not in report


def test_export_exits_zero_when_nothing_is_broader_and_names_the_cluster_when_there_are_several(collected):
    def without_the_broader_objects(objects):
        objects[:] = [
            o
            for o in objects
            if not (
                o["kind"] == "Egress" or (o["kind"] == "IngressBackend" and o["metadata"]["name"] == "bookstore-mtls")
            )
        ]

    collected(without_the_broader_objects)
    call_command("export_istio", stdout=io.StringIO(), stderr=io.StringIO())  # no SystemExit
    collected(name="second")
    with pytest.raises(CommandError, match="--cluster"):
        call_command("export_istio", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="no cluster named"):
        call_command("export_istio", cluster="nope", stdout=io.StringIO(), stderr=io.StringIO())
