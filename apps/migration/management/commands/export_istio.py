"""`manage.py export_istio`: the Istio bundle and the migration report of a cluster, from its latest snapshot.

Without `--output` the bundle (multi-document YAML) goes to standard output and the report to standard error; with
`--output DIR` it writes `DIR/meshboard-istio.yaml` (every namespace, in the order to move them in),
`DIR/<namespace>.yaml` per namespace and `DIR/report.txt`.

Exit status: 0 when nothing is broader than OSM; 3 when something is (an item or a difference the equivalence check
found): CI pipelines can gate on it. Errors (no such cluster, a bad revision) exit 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.clusters.models import Cluster
from apps.migration import services

BROADER_EXIT = 3


class Command(BaseCommand):
    help = "Translate a cluster's OSM configuration into Istio's: the YAML bundle and the fidelity report."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cluster", help="the cluster's name (default: the only one)")
        parser.add_argument(
            "--namespace", action="append", default=[], help="only this namespace (repeatable; default: all)"
        )
        parser.add_argument(
            "--revision",
            default="",
            help="the AKS Istio add-on revision (asm-1-N, from `az aks mesh get-revisions`); without it, labels for "
            "upstream Istio (istio-injection=enabled)",
        )
        parser.add_argument("--output", help="a directory for the bundle files and report.txt")

    def handle(self, *args: object, **options: object) -> None:
        cluster = self._cluster(options.get("cluster"))
        only = set(options["namespace"]) or None  # type: ignore[arg-type]
        try:
            migration = services.build(cluster, str(options.get("revision") or ""), only)
        except services.BadRevision as exc:
            raise CommandError(str(exc)) from exc
        if only:
            unknown = sorted(only - set(migration.translation.namespaces))
            if unknown:
                raise CommandError(f"nothing to generate for namespace {', '.join(unknown)} (not in the mesh?)")
        report = services.report_text(migration)
        output = options.get("output")
        if output:
            folder = Path(str(output))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "meshboard-istio.yaml").write_text(services.bundle_yaml(migration))
            for name in migration.translation.namespaces:
                (folder / f"{name}.yaml").write_text(services.bundle_yaml(migration, name))
            (folder / "report.txt").write_text(report)
            self.stderr.write(report)
            self.stderr.write(f"Wrote {len(migration.translation.namespaces) + 2} files to {folder}\n")
        else:
            self.stdout.write(services.bundle_yaml(migration), ending="")
            self.stderr.write(report, ending="")
        if migration.broader:
            self.stderr.write("Something is broader than OSM: exit status 3\n")
            self.stdout.flush()
            sys.exit(BROADER_EXIT)

    def _cluster(self, name: object) -> Cluster:
        if name:
            found = Cluster.objects.filter(name=str(name)).first()
            if found is None:
                raise CommandError(f"no cluster named {name!r}")
            return found
        clusters = list(Cluster.objects.order_by("name")[:2])
        if len(clusters) != 1:
            raise CommandError(
                "name the cluster with --cluster" if clusters else "no cluster yet (manage.py add_cluster)"
            )
        return clusters[0]
