"""Namespace scopes: a user limited to some namespaces sees only their rows, on every page, graph and export.

Pages, the graph, the checks, searches and exports read the snapshot through a few hundred queries in a dozen apps;
a filter added to each one by hand would be missed somewhere, and one missed query shows another team's services.
So the filter lives where every one of those queries starts: the default manager of each table keyed by namespace
(`NamespaceScoped` and its two variants). This middleware makes the request's user the scope for the length of the
request; outside a request (the collectors, Celery, management commands) there is no scope and nothing is filtered.

`allowed_namespaces(user)` is the one place that says what a user sees; `apps/clusters/roles.py` says where an
operator may write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import models
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse

_request: ContextVar[HttpRequest | None] = ContextVar("meshboard_scope_request", default=None)
_CACHE = "_meshboard_namespaces"


def allowed_namespaces(user: Any) -> frozenset[str] | None:
    """The namespaces `user` may see; None: every namespace (no limit set, or not signed in: views refuse those)."""
    if not getattr(user, "is_authenticated", False):
        return None
    from .models import Access

    access = Access.objects.filter(user=user).only("namespaces").first()
    if access is None or not access.namespaces:
        return None
    return frozenset(access.namespaces)


def request_namespaces(request: HttpRequest) -> frozenset[str] | None:
    """`allowed_namespaces` of the request's user, read once per request."""
    if not hasattr(request, _CACHE):
        setattr(request, _CACHE, allowed_namespaces(getattr(request, "user", None)))
    return getattr(request, _CACHE)


def current_namespaces() -> frozenset[str] | None:
    """The scope of the request being served on this thread, None outside requests or for an unlimited user."""
    request = _request.get()
    return None if request is None else request_namespaces(request)


def visible(namespace: str) -> bool:
    allowed = current_namespaces()
    return allowed is None or namespace in allowed


def hidden_note(allowed: frozenset[str] | None) -> str:
    """What every page says to a limited user."""
    if allowed is None:
        return ""
    names = ", ".join(sorted(allowed))
    return f"You see the namespace{'s' if len(allowed) > 1 else ''} {names} only; every other namespace is hidden."


def require_namespace(request: HttpRequest, namespace: str) -> None:
    """404 for a page about a namespace hidden from the user, as for one that does not exist: for the pages that
    answer for any name (a history that is empty is still a page)."""
    allowed = request_namespaces(request)
    if allowed is not None and namespace not in allowed:
        raise Http404("No such namespace among those you may see.")


@contextmanager
def unscoped() -> Iterator[None]:
    """Read every namespace inside a request (code that must see the whole table, never to show it)."""
    token = _request.set(None)
    try:
        yield
    finally:
        _request.reset(token)


class NamespaceScopeMiddleware:
    """After AuthenticationMiddleware: the request's user scopes every snapshot query until the response is made.
    The user is looked up lazily, at the first scoped query, so requests that read no snapshot pay nothing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            response = self.get_response(request)
        finally:
            _request.reset(token)
        if getattr(response, "streaming", False) and not getattr(response, "is_async", False):
            # A streamed body is produced after this returns: it is produced under the same scope.
            response.streaming_content = _scoped_iter(request, response.streaming_content)
        return response


def _scoped_iter(request: HttpRequest, chunks: Iterator[bytes]) -> Iterator[bytes]:
    token = _request.set(request)
    try:
        yield from chunks
    finally:
        _request.reset(token)


class NamespaceScoped(models.Manager):
    """The default manager of a table whose rows belong to a namespace (blank: a cluster-wide object)."""

    def scope_filter(self, allowed: frozenset[str]) -> Q:
        return Q(namespace__in=[*allowed, ""])

    def get_queryset(self) -> models.QuerySet:
        qs = super().get_queryset()
        allowed = current_namespaces()
        return qs if allowed is None else qs.filter(self.scope_filter(allowed))


class NamespaceRowsScoped(NamespaceScoped):
    """Namespaces themselves: a row is visible when the namespace it is is."""

    def scope_filter(self, allowed: frozenset[str]) -> Q:
        return Q(name__in=allowed)


class EdgeScoped(NamespaceScoped):
    """Traffic between two namespaces: visible when both ends are, so a hidden caller's name never shows."""

    def scope_filter(self, allowed: frozenset[str]) -> Q:
        return Q(source_namespace__in=allowed, destination_namespace__in=allowed)
