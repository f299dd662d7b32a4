"""The tick's schedule (each cluster on its own grid of slots, so collections neither drift nor bunch up) and its
dispatch (each collection to the next caught-up worker in turn, else the shared queue), against a real database and
a real Redis; worker heartbeats are written with the function a worker's heartbeat thread calls."""

from __future__ import annotations

import ast
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from celery.utils.nodenames import worker_direct

from apps.clusters.models import Cluster
from apps.clusters.tasks import _claim_due, caught_up_workers, first_slot, next_due, slot_phase, tick
from apps.core import heartbeats
from lab.waiting import wait_for

POLL = 15
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _on_grid(cluster_id: int, moment: datetime) -> bool:
    return first_slot(cluster_id, POLL, moment - timedelta(milliseconds=1)) == moment


def test_a_claim_on_time_moves_to_the_next_slot_whatever_the_tick_lateness():
    slot = first_slot(7, POLL, T0)
    for late in (0, 0.3, 4.9, 7.6, 14.9):
        assert next_due(7, POLL, slot, slot + timedelta(seconds=late)) == slot + timedelta(seconds=POLL)


def test_the_first_claim_collects_at_once_and_then_joins_the_grid_a_whole_interval_later():
    due = next_due(7, POLL, None, T0)
    assert _on_grid(7, due) and T0 + timedelta(seconds=POLL) <= due < T0 + timedelta(seconds=2 * POLL)


@pytest.mark.parametrize(
    "why", ["a retry after a failure", "a claim more than an interval late", "a changed poll interval"]
)
def test_off_the_grid_the_schedule_rejoins_it_at_least_half_an_interval_later(why):
    now = T0 + timedelta(seconds=3.21)
    due = {
        "a retry after a failure": now - timedelta(seconds=0.5),  # finished + 2 s of backoff
        "a claim more than an interval late": first_slot(7, POLL, now - timedelta(seconds=2 * POLL)),
        "a changed poll interval": first_slot(7, 60, T0 - timedelta(seconds=60)),
    }[why]
    following = next_due(7, POLL, due, now)
    assert _on_grid(7, following)
    assert now + timedelta(seconds=POLL / 2) <= following < now + timedelta(seconds=1.5 * POLL)


def test_clusters_added_one_after_another_spread_over_the_interval():
    phases = sorted(slot_phase(pk, POLL) for pk in range(1, 21))
    gaps = [b - a for a, b in zip(phases, [*phases[1:], phases[0] + POLL], strict=True)]
    # 20 clusters in 15 s: evenly, 0.75 s apart; the golden ratio's steps leave no gap above twice that.
    assert max(gaps) < 2 * POLL / 20 and min(gaps) > POLL / 20 / 2


@pytest.mark.django_db
def test_over_many_intervals_each_cluster_is_claimed_once_in_each_of_its_intervals():
    """Twenty clusters, a tick every 5 s arriving up to 3 s late, 12 intervals: the claims of each cluster land once
    in every interval after the first, always on its own slots, and no tick claims more than its share."""
    clusters = [Cluster.objects.create(name=f"c{i}", kubeconfig_path="-", poll_interval_seconds=15) for i in range(20)]
    rng = random.Random(25)
    claims: dict[int, list[datetime]] = {c.pk: [] for c in clusters}
    per_tick = []
    for n in range(12 * POLL // 5):
        now = T0 + timedelta(seconds=5 * n + rng.uniform(0, 3))
        claimed = _claim_due(Cluster.objects.all(), "next_collect_at", now)
        per_tick.append(len(claimed))
        for cluster in claimed:
            claims[cluster.pk].append(now)
    for pk, moments in claims.items():
        assert moments[0] < T0 + timedelta(seconds=3)  # at once, when first seen
        # The slot the second claim was for (the last one at or before it), then one claim in each following slot's
        # interval: none missed, none twice, no drift.
        slots = [first_slot(pk, POLL, moments[1] - timedelta(seconds=POLL, microseconds=-1))]
        while len(slots) < len(moments) - 1:
            slots.append(slots[-1] + timedelta(seconds=POLL))
        for slot, moment in zip(slots, moments[1:], strict=True):
            assert slot <= moment < slot + timedelta(seconds=POLL), (pk, slot, moment)
        assert slots[-1] + timedelta(seconds=POLL) > now  # and none missed at the end
        assert len(moments) >= 11
    # After the first tick (every cluster), 20 clusters over three ticks an interval: about 7 a tick, never all.
    assert per_tick[0] == 20 and max(per_tick[1:]) <= 12, per_tick


def _workers(redis, *names: str, direct: bool = True) -> None:
    """Heartbeats as running workers write them: on the cluster and tick queues, and on their direct queue."""
    for name in names:
        queues = ["cluster", "tick", *([worker_direct(name).name] if direct else [])]
        heartbeats.write_worker(name, queues)


def _waiting(redis, queue: str) -> list[int]:
    """The cluster ids of the collections waiting in a queue, as kombu's Redis transport stores them."""
    return [ast.literal_eval(json.loads(raw)["headers"]["argsrepr"])[0] for raw in redis.lrange(queue, 0, -1)]


@pytest.mark.django_db(transaction=True)  # the tick sends on commit
def test_the_tick_hands_collections_to_the_caught_up_workers_in_turn(redis):
    _workers(redis, "a@fleet", "b@fleet", "c@fleet")
    _workers(redis, "old@fleet", direct=False)  # a worker without a direct queue never gets one
    clusters = [Cluster.objects.create(name=f"c{i}", kubeconfig_path="unused") for i in range(6)]

    assert caught_up_workers("cluster") == ["a@fleet", "b@fleet", "c@fleet"]
    assert len(tick()) == 6

    per_worker = {name: _waiting(redis, worker_direct(name).name) for name in ("a@fleet", "b@fleet", "c@fleet")}
    assert sorted(len(ids) for ids in per_worker.values()) == [2, 2, 2]
    assert sorted(pk for ids in per_worker.values() for pk in ids) == [c.pk for c in clusters]
    assert _waiting(redis, "cluster") == [] and redis.llen(worker_direct("old@fleet").name) == 0
    # Nobody took them: every worker is behind, so the next collections go to the shared queue, which all consume.
    assert caught_up_workers("cluster") == []
    Cluster.objects.update(next_collect_at=None)
    tick()
    assert sorted(_waiting(redis, "cluster")) == [c.pk for c in clusters]


@pytest.mark.django_db(transaction=True)
def test_without_a_live_worker_the_tick_uses_the_shared_queue(redis, settings):
    settings.MESHBOARD_HEARTBEAT_SECONDS = 1
    cluster = Cluster.objects.create(name="c", kubeconfig_path="unused")
    heartbeats.write_worker("gone@fleet", ["cluster", worker_direct("gone@fleet").name])
    redis.zadd(heartbeats.queue_key("cluster"), {"gone@fleet": 0})  # its last heartbeat, long ago

    assert caught_up_workers("cluster") == []
    tick()
    assert _waiting(redis, "cluster") == [cluster.pk]


def test_a_real_worker_is_seen_on_its_direct_queue(celery_worker):
    assert wait_for(lambda: caught_up_workers("cluster")) == [celery_worker.hostname]
