"""The Celery app. The beat schedule lives here, in code: one frequent tick decides which clusters are due.

Queues (settings.CELERY_TASK_ROUTES): `cluster` carries the Kubernetes collections, `metrics` the Prometheus ones,
`tick` the scheduling tick. Production runs at least one worker per collection queue, each also consuming `tick`:
    celery -A meshboard worker -Q cluster,tick -n cluster@%h
    celery -A meshboard worker -Q metrics,tick -n metrics@%h
    celery -A meshboard beat
For many clusters, start more workers of a queue, on this machine or others sharing the PostgreSQL and the Redis (each
with its own -n name): every worker of a queue takes the next message when it is free, the tick sends each cluster
once per interval (apps/clusters/tasks.py), and a cluster's lock keeps its runs from overlapping. Beat runs once.
Beat (its scheduler) and every worker (a consumer bootstep) write heartbeats to Redis: apps/core/heartbeats.py.
"""

import os

from celery import Celery

from apps.core.heartbeats import WorkerHeartbeat

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshboard.settings")

app = Celery("meshboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.steps["consumer"].add(WorkerHeartbeat)
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule_tick(sender: Celery, **_kwargs: object) -> None:
    from django.conf import settings

    # A tick no worker took within its own period is dropped: the next one does its work, and workers busy for a
    # while (every one on a long collection) do not come back to a pile of ticks.
    period = settings.MESHBOARD_TICK_SECONDS
    sender.add_periodic_task(period, sender.signature("clusters.tick"), name="tick", expires=period)
