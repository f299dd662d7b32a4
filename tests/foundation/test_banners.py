"""The banners that say when the machinery or a source is down, and /readyz, through HTTP requests as each persona
makes them, against the real Redis (heartbeats as beat and the workers write them) and real failed collections."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.clusters.models import Cluster, CollectionRun
from apps.core import heartbeats, locks
from apps.mesh.services import collect_and_record
from apps.mesh.tasks import collect_cluster
from apps.metrics.services import collect_and_record as collect_metrics_and_record
from tests.conftest import free_port

pytestmark = pytest.mark.django_db


def _running(*, beat: bool = True, queues: tuple[str, ...] = ("cluster", "metrics")) -> None:
    """Heartbeats as a running beat and running workers write them."""
    if beat:
        heartbeats.write_beat()
    for queue in queues:
        heartbeats.write_worker(f"{queue}@test", [queue, "tick"])


def _backdate(cluster: Cluster, kind: str, seconds: float) -> CollectionRun:
    run = CollectionRun.objects.filter(cluster=cluster, kind=kind).latest("started_at")
    then = timezone.now() - timedelta(seconds=seconds)
    CollectionRun.objects.filter(pk=run.pk).update(started_at=then - timedelta(seconds=1), finished_at=then)
    run.refresh_from_db()
    return run


def _clock(moment) -> str:
    """A time as the banners write it: the clock today, with the date before it on another day (a run at 23:56
    read after midnight)."""
    local = timezone.localtime(moment)
    return local.strftime("%H:%M:%S" if local.date() == timezone.localtime().date() else "%Y-%m-%d %H:%M:%S")


def _banners(html: str) -> str:
    start = html.find('id="machinery"')
    return html[start : html.find("</div>", start)] if start >= 0 else ""


def test_it_shows_no_banner_while_everything_runs_and_data_is_fresh(client, viewer, bookstore, redis):
    _running()
    client.force_login(viewer)
    assert _banners(client.get("/").content.decode()) == ""


def test_it_names_the_worker_that_is_not_running_and_since_when_nothing_was_collected(
    client, viewer, operator, bookstore, redis
):
    last = _backdate(bookstore, "cluster", 600)
    _running(queues=("metrics",))  # beat and the metrics worker run; nobody consumes the cluster queue
    client.force_login(viewer)

    banners = _banners(client.get("/").content.decode())

    assert f"No collection since {_clock(last.finished_at)}" in banners
    assert "the worker for cluster data is not running. Start a worker for the queue cluster." in banners
    assert "older than 3 poll intervals" not in banners  # one banner says why, not one per stale cluster
    assert "celery -A meshboard worker" not in banners  # the command is for operators
    client.force_login(operator)
    assert "celery -A meshboard worker -Q cluster,tick" in _banners(client.get("/").content.decode())


def test_it_names_the_metrics_worker_and_beat(client, viewer, bookstore, redis):
    Cluster.objects.filter(pk=bookstore.pk).update(prometheus_url="http://127.0.0.1:9/")
    _running(beat=False, queues=("cluster",))
    client.force_login(viewer)

    banners = _banners(client.get("/").content.decode())

    assert "beat, the scheduler, is not running, so no collection starts" in banners
    assert "No metrics collection yet: the metrics worker is not running" in banners


def test_it_says_when_data_is_older_than_three_poll_intervals_and_why(
    client, viewer, operator, bookstore, kubeapi, redis
):
    last = _backdate(bookstore, "cluster", 3 * bookstore.poll_interval_seconds + 5)
    internal = f"127.0.0.1:{kubeapi.port}"
    kubeapi.stop()
    # A real failure, through the task body (here, not on a worker): the API server is gone; the next attempt backs off.
    assert collect_cluster.apply(args=(bookstore.pk,)).get() == "failed"
    _running()
    client.force_login(viewer)

    html = client.get("/").content.decode()

    banners = _banners(html)
    assert (
        f"Kubernetes objects of lab are older than 3 poll intervals (last collected at {_clock(last.finished_at)}"
        in (banners)
    )
    assert "Kubernetes API: cannot reach the API server. Check that the cluster is up" in banners
    bookstore.refresh_from_db()
    assert f"Next attempt at {_clock(bookstore.next_collect_at)}" in banners
    assert "Kubernetes objects stale since" in html  # the page's own freshness line
    assert internal not in html and "MaxRetryError" not in html and "urllib3" not in html

    client.force_login(operator)
    html = client.get("/").content.decode()
    assert internal in _banners(html) and "Operators: reading the Kubernetes version: cannot reach" in html


def test_it_says_collections_are_not_finishing_when_the_worker_runs_but_its_runs_never_end(
    client, viewer, bookstore, redis
):
    """A hung worker: its process writes its heartbeat (so it is not "not running"), but the run it took never ends
    and the data grows older than 3 poll intervals, with no failed run to explain it."""
    last = _backdate(bookstore, "cluster", 3 * bookstore.poll_interval_seconds + 5)
    hung = CollectionRun.objects.create(cluster=bookstore, kind="cluster")  # running, and never finishing
    CollectionRun.objects.filter(pk=hung.pk).update(started_at=last.finished_at + timedelta(seconds=1))
    _running()
    client.force_login(viewer)

    banners = _banners(client.get("/").content.decode())

    assert (
        f"Kubernetes objects of lab are older than 3 poll intervals (last collected at {_clock(last.finished_at)}"
        in (banners)
    )
    assert "Collections are not finishing; an operator can check the log of the worker for cluster data." in banners
    assert "is not running" not in banners and "Redis" not in banners


def test_data_two_poll_intervals_old_is_not_stale(client, viewer, bookstore, redis):
    _backdate(bookstore, "cluster", 2 * bookstore.poll_interval_seconds)
    _running()
    client.force_login(viewer)
    assert _banners(client.get("/").content.decode()) == ""


def test_never_collected_is_not_stale(client, viewer, operator, kubeapi, redis):
    cluster = Cluster.objects.create(name="fresh", kubeconfig_path=str(kubeapi.kubeconfig))
    internal = f"127.0.0.1:{kubeapi.port}"
    kubeapi.stop()
    collect_and_record(cluster)
    _running()
    client.force_login(viewer)

    html = client.get("/").content.decode()

    assert "Kubernetes objects never collected: Kubernetes API: cannot reach the API server." in html
    assert "stale since" not in html and _banners(html) == ""
    assert internal not in html
    client.force_login(operator)
    assert internal in client.get("/").content.decode()


def test_only_operators_see_the_prometheus_url(client, viewer, operator, bookstore, redis):
    port = free_port()
    Cluster.objects.filter(pk=bookstore.pk).update(prometheus_url=f"http://127.0.0.1:{port}")
    bookstore.refresh_from_db()
    _run, error = collect_metrics_and_record(bookstore)
    assert error is not None
    _running()
    client.force_login(viewer)

    html = client.get("/").content.decode()
    assert "Prometheus metrics never collected: Prometheus: cannot reach Prometheus. Check that it is running" in html
    assert f"127.0.0.1:{port}" not in html

    client.force_login(operator)
    assert f"cannot reach Prometheus at 127.0.0.1:{port}" in client.get("/").content.decode()


@pytest.fixture
def black_hole():
    """A port that accepts connections and never answers, like a Redis that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


class CountingBlackHole:
    """A port that accepts connections, counts them and never answers (a stalled Redis, as SIGSTOP leaves it)."""

    def __init__(self) -> None:
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._held: list[socket.socket] = []
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _addr = self._server.accept()
            except OSError:
                return
            self._held.append(conn)
            self.accepted += 1

    def close(self) -> None:
        self._server.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def counting_black_hole() -> Iterator[CountingBlackHole]:
    hole = CountingBlackHole()
    yield hole
    hole.close()


def test_a_stalled_redis_costs_one_timeout_per_breaker_period_not_one_per_request(
    client, viewer, bookstore, redis, settings, monkeypatch, counting_black_hole
):
    monkeypatch.setattr(locks, "PAGE_REDIS_BREAKER_SECONDS", 1.0)
    settings.REDIS_URL = f"redis://127.0.0.1:{counting_black_hole.port}/0"
    client.force_login(viewer)
    chart = "/services/bookstore/bookstore-v1/series?window=15m"

    first = client.get("/")
    assert "Redis, the broker, is unreachable" in _banners(first.content.decode())
    asked = counting_black_hole.accepted
    assert asked >= 1

    started = time.monotonic()
    pages = [client.get("/") for _ in range(3)] + [client.get(chart)]  # the banner and the chart cache
    elapsed = time.monotonic() - started
    assert all(page.status_code == 200 for page in pages)
    assert all("Redis, the broker, is unreachable" in _banners(page.content.decode()) for page in pages[:3])
    assert counting_black_hole.accepted == asked  # nobody asked Redis while the breaker was open
    assert elapsed < 4 * settings.MESHBOARD_PAGE_REDIS_TIMEOUT, elapsed  # not a timeout each

    time.sleep(1.1)  # the breaker's period is over: the next page asks Redis again (and finds it still stalled)
    assert "Redis, the broker, is unreachable" in _banners(client.get("/").content.decode())
    assert counting_black_hole.accepted > asked


@pytest.mark.parametrize("how", ["closed port", "never answers"])
def test_it_says_the_broker_is_unreachable_without_slowing_the_page(
    client, viewer, operator, bookstore, redis, settings, black_hole, how
):
    port = free_port() if how == "closed port" else black_hole
    settings.REDIS_URL = f"redis://:hunter2@127.0.0.1:{port}/0"
    client.force_login(viewer)

    started = time.monotonic()
    response = client.get("/")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed < 1.5, elapsed
    banners = _banners(response.content.decode())
    assert "Redis, the broker, is unreachable: no collection can be scheduled or run" in banners
    assert str(port) not in banners
    client.force_login(operator)
    banners = _banners(client.get("/").content.decode())
    assert f"redis://:***@127.0.0.1:{port}/0" in banners and "hunter2" not in banners


def test_readyz_lists_the_components_without_login(client, bookstore, redis):
    _running(queues=("cluster",))

    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"], body["redis"]) == ("ready", "ok", "ok")
    assert body["heartbeats"]["beat"]["alive"] is True
    assert body["heartbeats"]["queues"]["cluster"] == {"alive": True, "workers": ["cluster@test"]}
    assert body["heartbeats"]["queues"]["metrics"] == {"alive": False, "workers": []}
    [lab] = body["clusters"]
    assert lab["name"] == "lab" and lab["cluster"]["last_success"] and lab["cluster"]["stale"] is False
    assert "metrics" not in lab  # no Prometheus URL: no metrics collection to report
    assert body["problems"] == []


def test_readyz_stays_ready_when_redis_and_the_workers_are_down(client, bookstore, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["redis"]) == ("ready", "unreachable")
    assert body["problems"] and "Redis" in body["problems"][0]
    assert body["clusters"][0]["cluster"]["last_success"]


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_503_when_the_database_cannot_be_opened(client, redis, tmp_path):
    _running()
    original = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = str(tmp_path / "no-such-folder" / "db.sqlite3")
    else:
        connection.settings_dict["PORT"] = str(free_port())
    try:
        response = client.get("/readyz")
    finally:
        connection.close()
        connection.settings_dict.update(original)

    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"], body["redis"]) == ("unavailable", "unreachable", "ok")
    assert body["heartbeats"]["beat"]["alive"] is True
    assert client.get("/healthz").status_code == 200  # the database is back


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (401, "Kubernetes API: the API server refused Meshboard's credentials. Renew the kubeconfig or token."),
        (403, "Kubernetes API: Meshboard's identity may not read what it needs (RBAC)."),
        (503, "Kubernetes API: the API server answered with an error. Meshboard tries again with growing pauses."),
    ],
)
def test_each_kubernetes_failure_becomes_a_sentence_with_the_action(kubeapi, status, sentence):
    from apps.clusters.freshness import freshness

    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(kubeapi.kubeconfig))
    kubeapi.faults.add(r".", status=status)
    collect_and_record(cluster)

    f = freshness(cluster, "cluster")
    assert f.never_collected and f.failing and f.stale_since is None
    assert f.summary.startswith(sentence), f.summary
    assert str(status) in f.error  # the run record keeps the raw reason


def test_a_collection_whose_process_ended_says_so_and_what_to_do(bookstore):
    """The words apps/clusters/lost.py records when a collection's pool process dies (tests/reliability/test_faults.py
    kills one), as the pages summarize them."""
    from billiard.exceptions import WorkerLostError

    from apps.clusters.freshness import freshness
    from apps.clusters.lost import lost_reason

    error = lost_reason(WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL) Job: 3."))
    assert error == "stopped: the worker process running it ended (Worker exited prematurely: signal 9 (SIGKILL))"
    CollectionRun.objects.create(
        cluster=bookstore, kind="cluster", status=CollectionRun.Status.FAILED, finished_at=timezone.now(), error=error
    )

    f = freshness(bookstore, "cluster")
    assert f.failing
    assert f.summary == (
        "Kubernetes API: the process of the worker for cluster data running the collection ended before it finished "
        "(killed, often for lack of memory). Meshboard collects again at the next interval; if this recurs, give that "
        "worker more memory."
    )
