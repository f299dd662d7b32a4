"""`manage.py trim_history [--cluster NAME] [--days N] [--max-versions N]`: apply the configuration history's
retention now (collections also trim as they go): versions older than MESHBOARD_HISTORY_DAYS go, except each object's
last one before the cut, and each object keeps at most MESHBOARD_HISTORY_MAX_VERSIONS."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.clusters.models import Cluster
from apps.history.services import trim


class Command(BaseCommand):
    help = "Trim the configuration history to its retention (days kept, versions per object)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--cluster", help="only this cluster (default: every cluster)")
        parser.add_argument("--days", type=int, help="keep this many days (default: MESHBOARD_HISTORY_DAYS)")
        parser.add_argument(
            "--max-versions", type=int, help="versions kept per object (default: MESHBOARD_HISTORY_MAX_VERSIONS)"
        )

    def handle(self, *args, cluster: str | None, days: int | None, max_versions: int | None, **options) -> None:
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1")
        if max_versions is not None and max_versions < 1:
            raise CommandError("--max-versions must be at least 1")
        clusters = Cluster.objects.all()
        if cluster:
            clusters = clusters.filter(name=cluster)
            if not clusters.exists():
                raise CommandError(f"no cluster named {cluster!r}")
        for name, deleted in trim(clusters, days=days, max_versions=max_versions).items():
            self.stdout.write(f"{name}: {deleted} versions deleted")
