from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.clusters.models import Access
from apps.clusters.roles import OPERATOR, VIEWER, ensure_roles


class Command(BaseCommand):
    help = (
        "Create a user (or reset its password, role and namespaces) in the viewer or operator role, optionally "
        "limited to namespaces."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", choices=[VIEWER, OPERATOR], required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--staff", action="store_true", help="may also open the Django admin")
        parser.add_argument(
            "--namespaces", default=None, help="comma-separated namespaces the user sees (default: every namespace)"
        )
        parser.add_argument(
            "--operate-namespaces",
            default=None,
            help="operators: comma-separated namespaces where they may change weights (default: all they see)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        groups = ensure_roles()
        User = get_user_model()
        user = User.objects.filter(username=opts["username"]).first() or User(username=opts["username"])
        try:
            validate_password(opts["password"], user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        access = Access(namespaces=_names(opts["namespaces"]), operate_namespaces=_names(opts["operate_namespaces"]))
        try:
            access.clean_fields(exclude=["user"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        user.set_password(opts["password"])
        user.is_staff = bool(opts["staff"])
        user.save()
        user.groups.set([groups[opts["role"]]])
        Access.objects.update_or_create(
            user=user, defaults={"namespaces": access.namespaces, "operate_namespaces": access.operate_namespaces}
        )
        where = f" of {', '.join(access.namespaces)}" if access.namespaces else ""
        self.stdout.write(f"user {user.username} is a{'n' if opts['role'] == OPERATOR else ''} {opts['role']}{where}")


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]
