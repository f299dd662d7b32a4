from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.clusters.models import Cluster


class Command(BaseCommand):
    help = "Add a cluster to watch, or update it if the name exists (for scripted setup)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--kubeconfig", help="path to a kubeconfig file")
        source.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
        parser.add_argument("--context", default="", help="kubeconfig context (default: current)")
        parser.add_argument("--prometheus-url", default="")
        parser.add_argument(
            "--prometheus-ca-file", default="", help="PEM file of the CA(s) signing Prometheus's certificate"
        )
        parser.add_argument("--prometheus-username", default="", help="basic-auth user for Prometheus")
        password = parser.add_mutually_exclusive_group()
        password.add_argument(
            "--prometheus-password-file", default="", help="file holding the basic-auth password (not stored)"
        )
        password.add_argument(
            "--prometheus-password-env",
            default="",
            metavar="VARIABLE",
            help="environment variable of the workers holding the basic-auth password (not stored)",
        )
        parser.add_argument(
            "--prometheus-bearer-token-file",
            default="",
            help="file holding a bearer token for Prometheus, read again whenever it changes",
        )
        parser.add_argument("--control-plane-namespace", default="", help="default: detected")
        parser.add_argument("--poll-interval", type=int, default=None, help="seconds between collections")
        parser.add_argument(
            "--namespaces",
            default="",
            help="comma-separated namespaces to watch (namespace-scoped mode, for an identity with Roles in those "
            "namespaces only); default: the whole cluster",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        cluster = Cluster.objects.filter(name=opts["name"]).first() or Cluster(name=opts["name"])
        cluster.in_cluster = bool(opts["in_cluster"])
        cluster.kubeconfig_path = opts["kubeconfig"] or ""
        cluster.kube_context = opts["context"]
        cluster.prometheus_url = opts["prometheus_url"]
        cluster.prometheus_ca_file = opts["prometheus_ca_file"]
        cluster.prometheus_username = opts["prometheus_username"]
        cluster.prometheus_password_file = opts["prometheus_password_file"]
        cluster.prometheus_password_env = opts["prometheus_password_env"]
        cluster.prometheus_bearer_token_file = opts["prometheus_bearer_token_file"]
        cluster.control_plane_namespace = opts["control_plane_namespace"]
        cluster.watched_namespaces = [name.strip() for name in opts["namespaces"].split(",") if name.strip()]
        if opts["poll_interval"] is not None:
            cluster.poll_interval_seconds = opts["poll_interval"]
        try:
            cluster.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        created = cluster.pk is None
        cluster.save()
        scope = (
            f"namespaces {', '.join(cluster.watched_namespaces)} only"
            if cluster.namespace_scoped
            else "the whole cluster"
        )
        verb = "added" if created else "updated"
        self.stdout.write(f"{verb} cluster {cluster.name} (id {cluster.pk}), watching {scope}")
