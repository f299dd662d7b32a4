"""An upgrade keeps the audit history: rows written at the previous release's schema survive the new migrations."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

# The schema as the previous release left it (before the outcome classes and managedFields).
BEFORE = [("canary", "0001_initial"), ("mesh", "0003_trafficsplit_owners"), ("clusters", "0002_metrics_schedule")]


@pytest.mark.django_db(transaction=True)
def test_it_keeps_every_weight_change_across_the_upgrade():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    cluster = old.get_model("clusters", "Cluster").objects.create(name="prod", kubeconfig_path="/dev/null")
    WeightChange = old.get_model("canary", "WeightChange")
    rows = [
        WeightChange.objects.create(
            cluster_id=cluster.pk,
            namespace="bookstore",
            split="bookstore-split",
            username=f"user{i}",
            weights_before=[{"service": "bookstore-v1", "weight": 100}],
            weights_after=[{"service": "bookstore-v1", "weight": 90}, {"service": "bookstore-v2", "weight": 10}],
            result=result,
            reason=f"reason {i}",
        )
        for i, result in enumerate(["applied", "conflict", "rejected", "failed"])
    ]
    old.get_model("mesh", "TrafficSplit").objects.create(
        cluster_id=cluster.pk, namespace="bookstore", name="bookstore-split", root_service="bookstore", backends=[]
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    from apps.canary.models import WeightChange as Current
    from apps.mesh.models import TrafficSplit

    kept = list(Current.objects.order_by("id").values_list("id", "username", "result", "reason", "weights_after"))
    assert kept == [(r.pk, r.username, r.result, r.reason, r.weights_after) for r in rows]
    assert [c.changed_cluster for c in Current.objects.order_by("id")] == [True, False, False, False]
    assert TrafficSplit.objects.get().managers == []  # the new column starts empty until the next collection
