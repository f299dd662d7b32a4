from django.apps import AppConfig


class CanaryConfig(AppConfig):
    name = "apps.canary"
    label = "canary"
    verbose_name = "Canary"

    def ready(self) -> None:
        from . import followup  # noqa: F401  (connects its receiver to the mesh's snapshot_stored)
