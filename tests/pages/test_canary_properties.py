"""Whatever is posted, by whoever, the editor answers without a 500, never leaves an invalid split in the cluster,
and leaves exactly one audit record per authenticated attempt to write (none for previews and for filling the form,
none for anonymous posts); and a split Flagger drives needs an explicit confirmation."""

from __future__ import annotations

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from apps.canary.models import WeightChange
from apps.canary.weights import PRESETS
from apps.clusters.models import Cluster
from apps.mesh.models import TrafficSplit
from apps.mesh.services import collect_and_record
from lab.seeds.loader import load_seed
from tests.helpers import bookstore_split, flagger_canary

URL = "/splits/bookstore/bookstore-split/"
NAMES = ["bookstore-v1", "bookstore-v2", "bookstore", "ghost", "", "../x", "bookstore-v1\n"]

weight_text = st.one_of(
    st.integers(min_value=-(2**33), max_value=2**33).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
    st.sampled_from(["", " 7 ", "1e3", "0x10", "٣", "10;DROP", "<b>1</b>", "\x00", "9" * 40]),
)
# What the form may carry as its resourceVersion: the one collected last, an older one, or anything.
resource_versions = st.one_of(st.sampled_from(["current", "stale"]), st.text(max_size=70), st.just("9" * 64))
# The buttons of the editor (and some no button sends): only "apply" writes.
actions = st.one_of(
    st.sampled_from(["apply", "preview", "preset", "add", "mark", "remove_0", "remove_1", "remove_7"]),
    st.sampled_from(["", "remove_", "remove_-1", "APPLY", "delete"]),
    st.text(max_size=10),
)
USERS = st.sampled_from(["operator", "viewer", "anonymous"])

# Anything at all, and (as often) what a person at the editor would post, so that writes and conflicts happen too.
arbitrary_posts = st.fixed_dictionaries(
    {
        "who": USERS,
        "rv": resource_versions,
        "action": actions,
        "weights": st.lists(weight_text, max_size=4),
        "names": st.lists(st.sampled_from(NAMES), max_size=4),
    }
)
plausible_posts = st.fixed_dictionaries(
    {
        "who": USERS,
        "rv": st.sampled_from(["current", "current", "stale"]),
        "action": st.sampled_from(["apply", "apply", "preview", "preset", "add", "mark", "remove_1"]),
        "weights": st.lists(st.integers(min_value=0, max_value=100).map(str), min_size=2, max_size=2),
        "names": st.permutations(["bookstore-v1", "bookstore-v2"]),
    }
)


def _post(who: str, rv: str, action: str, weights=("30", "70"), names=("bookstore-v1", "bookstore-v2")) -> dict:
    return {"who": who, "rv": rv, "action": action, "weights": list(weights), "names": list(names)}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    post=st.one_of(arbitrary_posts, plausible_posts),
    preset=st.sampled_from([*PRESETS, "bogus"]),
    canary=st.sampled_from([*NAMES, None]),
)
# Every class at least once, whatever the generator happens to draw: applied, conflict, invalid, forbidden, none.
@example(post=_post("operator", "current", "apply"), preset="even", canary=None)
@example(post=_post("operator", "stale", "apply"), preset="even", canary=None)
@example(post=_post("operator", "x" * 65, "apply"), preset="even", canary=None)
@example(post=_post("operator", "current", "preview"), preset="even", canary=None)
@example(post=_post("operator", "current", "preset"), preset="even", canary="bookstore-v2")
@example(post=_post("viewer", "current", "preview"), preset="even", canary=None)
@example(post=_post("anonymous", "current", "apply"), preset="even", canary=None)
def test_it_never_fails_never_writes_an_invalid_split_and_audits_each_attempt(
    client, operator, viewer, bookstore, kubeapi, post, preset, canary
):
    who, rv, action, weights, names = (post[key] for key in ("who", "rv", "action", "weights", "names"))
    split = TrafficSplit.objects.get(cluster=bookstore, name="bookstore-split")
    stale = str(int(split.resource_version) - 1) if split.resource_version.isdigit() else "1"
    data = {"resource_version": {"current": split.resource_version, "stale": stale}.get(rv, rv)}
    if action == "preset":
        data["preset"] = preset
    else:
        data["action"] = action
    if action == "add":
        data["add_backend"] = names[0] if names else "bookstore-v2"
    if canary is not None:
        data["canary_backend"] = canary
    for i, (name, weight) in enumerate(zip(names, weights, strict=False)):
        data[f"backend_{i}"] = name
        data[f"weight_{i}"] = weight
    if who == "anonymous":
        client.logout()
    else:
        client.force_login(operator if who == "operator" else viewer)

    last = WeightChange.objects.order_by("-id").values_list("id", flat=True).first() or 0
    response = client.post(URL, data)

    assert response.status_code != 500
    added = list(WeightChange.objects.filter(id__gt=last))
    if who == "anonymous":
        assert response.status_code == 302 and "/login" in response["Location"]
        assert added == []
    elif who == "viewer":  # any post by a viewer is an attempt to write, refused and recorded
        assert response.status_code == 403
        assert [(r.result, r.username) for r in added] == [("forbidden", "vera")]
    elif action == "apply":
        assert response.status_code in (200, 302)
        assert len(added) == 1, added
        result = added[0].result
        if response.status_code == 302:
            assert result == "applied", added[0].reason
        else:
            assert result in ("invalid", "conflict"), added[0].reason
            assert added[0].reason
            if result == "conflict":  # the form was opened at another version than the cluster's
                assert data["resource_version"] != split.resource_version
    else:  # a preview or filling the form sends nothing and is no attempt
        assert response.status_code == 200
        assert added == []

    event(f"{who} {action if action in ('apply', 'preview') else 'other'}: {[r.result for r in added]}")
    live = bookstore_split(kubeapi)
    live_weights = [b["weight"] for b in live["spec"]["backends"]]
    assert all(isinstance(w, int) and 0 <= w <= 2_147_483_647 for w in live_weights)
    assert 1 <= sum(live_weights) <= 4_294_967_295
    assert {b["service"] for b in live["spec"]["backends"]} <= {"bookstore-v1", "bookstore-v2", "bookstore"}
    if response.status_code != 302:
        assert live["metadata"]["resourceVersion"] == split.resource_version  # nothing was written


def test_it_requires_confirmation_when_flagger_drives_the_split(client, operator, kubeapi_factory):
    seed = load_seed("bookstore")
    seed.objects.append(flagger_canary())
    server = kubeapi_factory(seed)
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(server.kubeconfig))
    collect_and_record(cluster)
    split = TrafficSplit.objects.get(cluster=cluster, name="bookstore-split")
    client.force_login(operator)
    data = {
        "resource_version": split.resource_version,
        "action": "apply",
        "backend_0": "bookstore-v1",
        "weight_0": "90",
    }

    html = client.post(URL, data).content.decode()
    assert "Flagger Canary bookstore manages this split" in html and "Confirm to apply anyway" in html

    response = client.post(URL, {**data, "confirm_flagger": "on"})
    assert response.status_code == 302


def test_it_shows_no_flagger_warning_without_the_canary_crd(client, operator, bookstore):
    client.force_login(operator)
    assert "Flagger" not in client.get(URL).content.decode()
