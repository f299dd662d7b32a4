from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "apps.metrics"
    label = "metrics"
    verbose_name = "Mesh metrics"

    def ready(self) -> None:
        from apps.clusters.tasks import Collection, register_collection

        from .tasks import collect_metrics

        register_collection(Collection(collect_metrics, "next_metrics_at", needs_prometheus=True))
