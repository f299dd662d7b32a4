"""`manage.py check_heartbeat beat` or `manage.py check_heartbeat worker NAME QUEUE`: exit 0 when that process's
heartbeat in Redis is live, 1 when it is missing or Redis cannot be asked. For container healthchecks: unlike
`test -f` on beat's schedule file, it fails when the process stops looping."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.core import heartbeats


class Command(BaseCommand):
    help = "Exit 0 when beat's (or one worker's) heartbeat in Redis is live, 1 otherwise."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="who", required=True)
        sub.add_parser("beat", help="beat's heartbeat")
        worker = sub.add_parser("worker", help="one worker's heartbeat on one queue")
        worker.add_argument("hostname", help="the worker's node name, e.g. cluster@$HOSTNAME")
        worker.add_argument("queue", help="a queue the worker consumes, e.g. cluster")

    def handle(self, *args, who: str, hostname: str = "", queue: str = "", **options) -> None:
        try:
            beats = heartbeats.read([queue] if queue else [], timeout=2.0)
        except heartbeats.HeartbeatsUnavailable as exc:
            raise CommandError(f"Redis cannot be asked: {exc}", returncode=1) from None
        if who == "beat":
            if not beats.beat_alive():
                raise CommandError(f"no beat heartbeat in the last {beats.ttl:g} s", returncode=1)
        elif hostname not in beats.workers.get(queue, {}):
            raise CommandError(
                f"no heartbeat of {hostname} on the queue {queue} in the last {beats.ttl:g} s", returncode=1
            )
        self.stdout.write("alive")
