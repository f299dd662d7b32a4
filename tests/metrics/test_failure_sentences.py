"""What pages say when a metrics collection fails: a sentence naming Prometheus and the action, from real failures
against a real Prometheus behind a fault proxy; the run record keeps the raw reason with the internal address."""

from __future__ import annotations

import pytest

from apps.clusters.freshness import freshness
from apps.metrics.services import collect_and_record

from .faultproxy import FaultProxy

pytestmark = pytest.mark.django_db


@pytest.fixture
def proxy(proms):
    p = FaultProxy(proms.byo.url)
    yield p
    p.close()


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (401, "Prometheus: Prometheus refused access. Check the credentials or proxy in the cluster's Prometheus URL."),
        (404, "Prometheus: there is no Prometheus API at the cluster's Prometheus URL. Fix the URL."),
        (503, "Prometheus: Prometheus answered with an error. Meshboard tries again with growing pauses."),
    ],
)
def test_each_prometheus_failure_becomes_a_sentence_with_the_action(proxy, snapshot_cluster, status, sentence):
    cluster = snapshot_cluster(proxy.url)
    proxy.fail(r".", status=status)
    _run, error = collect_and_record(cluster)
    assert error is not None

    f = freshness(cluster, "metrics")
    assert f.summary == sentence
    assert proxy.url.split("//")[1] in f.error and proxy.url.split("//")[1] not in f.summary


def test_an_unreachable_prometheus_is_named_with_the_action(snapshot_cluster):
    cluster = snapshot_cluster("http://127.0.0.1:9")
    collect_and_record(cluster)

    f = freshness(cluster, "metrics")
    assert f.summary.startswith("Prometheus: cannot reach Prometheus. Check that it is running")
    assert "127.0.0.1:9" in f.error and "127.0.0.1" not in f.summary


def test_a_page_that_is_not_prometheus_is_named_as_such(proxy, snapshot_cluster):
    """A 200 that is not JSON (a proxy's sign-in page at the configured URL): not the Prometheus API, for a person to
    fix, not a failure to retry."""
    cluster = snapshot_cluster(proxy.url)
    proxy.fail(r".", status=200, body=b"<!doctype html><title>Sign in</title><form>...</form>")
    _run, error = collect_and_record(cluster)
    assert error is not None and not error.transient
    assert "not the Prometheus API" in error.reason

    f = freshness(cluster, "metrics")
    assert f.summary.startswith("Prometheus: the cluster's Prometheus URL answers, but not as Prometheus does.")


def test_an_answer_whose_labels_are_not_an_object_is_an_unexpected_shape(proxy, snapshot_cluster):
    """The decoder's label objects are kept as they are (not copied into new dicts), so a series whose `metric` is
    no object is caught where the answer is read, not later as a crash in the mapping."""
    cluster = snapshot_cluster(proxy.url)
    body = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":["up"],"value":[1,"1"]}]}}'
    proxy.fail(r"/api/v1/query\b", status=200, body=body)
    run, error = collect_and_record(cluster)
    assert error is not None and not error.transient
    assert "answered an unexpected shape" in error.reason
    assert run.status == "failed"
