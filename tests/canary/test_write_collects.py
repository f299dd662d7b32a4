"""Fresh data right after a write (issue 13 item 7): a write that changed the cluster puts a cluster collection and
a metrics collection of that cluster on the real Redis broker's queues; one that changed nothing puts none."""

from __future__ import annotations

import json

import pytest
from kombu import pools

from apps.clusters.models import Cluster
from meshboard.celery import app
from tests.helpers import change_bookstore_weights

pytestmark = pytest.mark.django_db(transaction=True)  # the collections are enqueued when the write's row commits
SPLIT_PATH = r"/trafficsplits/bookstore-split$"


def _forget_broker_connections() -> None:
    """Celery keeps the connection and producer pools of the broker URL it first sent to (an earlier test may have
    sent to the default URL, which is down), so changing `broker_url` alone does not redirect sending. Drop them,
    as Celery itself does after a fork."""
    pools.reset()  # kombu's registry of connection and producer pools, closed and emptied
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker(redis):
    """The session's Redis as the broker the write sends to."""
    _forget_broker_connections()
    yield redis
    _forget_broker_connections()


def _queued(redis, queue: str) -> list[tuple[str, str]]:
    """(task, args) of the messages waiting in one queue, as kombu's Redis transport stores them."""
    return [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in map(json.loads, redis.lrange(queue, 0, -1))]


@pytest.fixture
def cluster(bookstore, broker):
    Cluster.objects.filter(pk=bookstore.pk).update(prometheus_url="http://127.0.0.1:9/")  # nothing listens there
    bookstore.refresh_from_db()
    assert _queued(broker, "cluster") == [] and _queued(broker, "metrics") == []
    return bookstore


@pytest.mark.parametrize(
    ("fault", "result"),
    [
        (None, "applied"),
        ({"status": 500, "when": "after"}, "confirmed"),  # stored, answered 500: confirmed by reading back
    ],
)
def test_a_write_that_changed_the_cluster_collects_it_at_once(cluster, broker, operator, kubeapi, fault, result):
    if fault:
        kubeapi.faults.add(SPLIT_PATH, verb="patch", skip=1, times=1, **fault)

    outcome = change_bookstore_weights(cluster, operator, 50, 50)

    assert outcome.record.result == result, outcome.record.reason
    args = f"({cluster.pk},)"
    assert _queued(broker, "cluster") == [("mesh.collect_cluster", args)]
    assert _queued(broker, "metrics") == [("metrics.collect_metrics", args)]


def test_a_write_that_changed_nothing_collects_nothing_early(cluster, broker, operator, kubeapi):
    kubeapi.faults.add(SPLIT_PATH, verb="patch", skip=1, times=1, status=422)

    outcome = change_bookstore_weights(cluster, operator, 50, 50)

    assert outcome.record.result == "rejected"
    assert _queued(broker, "cluster") == [] and _queued(broker, "metrics") == []
