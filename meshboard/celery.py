"""The Celery app. The beat schedule lives here, in code: one frequent tick decides which clusters are due."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshboard.settings")

app = Celery("meshboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule_tick(sender: Celery, **_kwargs: object) -> None:
    from django.conf import settings

    sender.add_periodic_task(settings.MESHBOARD_TICK_SECONDS, sender.signature("clusters.tick"), name="tick")
