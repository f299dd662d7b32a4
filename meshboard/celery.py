"""The Celery app. The beat schedule lives here, in code: one frequent tick decides which clusters are due.

Queues (settings.CELERY_TASK_ROUTES): `cluster` carries the Kubernetes collections, `metrics` the Prometheus ones,
`tick` the scheduling tick. Production runs one worker per collection queue, each also consuming `tick`:
    celery -A meshboard worker -Q cluster,tick -n cluster@%h
    celery -A meshboard worker -Q metrics,tick -n metrics@%h
    celery -A meshboard beat
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

    sender.add_periodic_task(settings.MESHBOARD_TICK_SECONDS, sender.signature("clusters.tick"), name="tick")
