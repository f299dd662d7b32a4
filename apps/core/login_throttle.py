"""Login throttling: failed logins counted per (username, client address) and per client address, in Redis.

After MESHBOARD_LOGIN_FAILURES failures for one username from one client, that pair is locked out for
MESHBOARD_LOGIN_LOCKOUT_SECONDS; the same username still logs in from any other address, so an attacker cannot lock
an operator out from elsewhere (during an incident, of all times). A client with MESHBOARD_LOGIN_CLIENT_FAILURES
failures over all usernames (password spraying) is locked out altogether. Failures count until LOCKOUT seconds pass
without one; a successful login forgets that pair's failures, not the client's. While locked out, no password is
checked at all, so guessing goes no further.

Each attempt is counted before the password is checked (and uncounted when it was right), so parallel requests
cannot slip extra guesses past the limit. Each failure and each refusal is one log line on `apps.core.login_throttle`.

The client is REMOTE_ADDR, or, behind MESHBOARD_TRUSTED_PROXIES proxies, the address the outermost trusted proxy
put in X-Forwarded-For (never a value the client itself can choose). IPv6 clients count per /64, the block one host
usually holds. When Redis cannot be reached the counts live in this process only (logged), so a Redis outage weakens
the throttle but never locks anyone out; after a timeout, the page path's Redis breaker keeps logins from waiting for
Redis again for a few seconds.

Both login forms use it: the site's (`/accounts/login/`) and the admin's.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse

from .locks import page_redis_breaker, page_redis_client

log = logging.getLogger(__name__)
PREFIX = "meshboard:login"


def client_address(request: HttpRequest) -> str:
    """The client as the login throttle counts it: an IPv4 address or an IPv6 /64."""
    remote = request.META.get("REMOTE_ADDR", "")
    candidate = remote
    trusted = settings.MESHBOARD_TRUSTED_PROXIES
    if trusted:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if hops:
            # Each trusted proxy appends the address it was connected from: the Nth entry from the right is what
            # the outermost trusted proxy saw. Entries left of it are whatever the client sent.
            candidate = hops[-trusted] if len(hops) >= trusted else hops[0]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _user_key(username: str) -> str:
    return hashlib.sha256(username.casefold().encode()).hexdigest()[:32]


class _MemoryStore:
    """The counters of this process, for when Redis cannot be reached. Same operations as Redis's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, tuple[int, float]] = {}

    def _live(self, key: str, now: float) -> int | None:
        value = self._data.get(key)
        if value is None or value[1] <= now:
            self._data.pop(key, None)
            return None
        return value[0]

    def incr(self, key: str, ttl: int) -> int:
        now = time.monotonic()
        with self._lock:
            count = (self._live(key, now) or 0) + 1
            self._data[key] = (count, now + ttl)
            if len(self._data) > 100_000:  # an attacker's many addresses cannot grow this without bound
                self._data = {k: v for k, v in self._data.items() if v[1] > now}
            return count

    def decr(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            count = self._live(key, now)
            if count is not None:
                self._data[key] = (max(count - 1, 0), self._data[key][1])

    def set(self, key: str, ttl: int) -> None:
        with self._lock:
            self._data[key] = (1, time.monotonic() + ttl)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def ttl(self, key: str) -> float | None:
        now = time.monotonic()
        with self._lock:
            if self._live(key, now) is None:
                return None
            return self._data[key][1] - now


class _RedisStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def incr(self, key: str, ttl: int) -> int:
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, ttl)
        return int(pipe.execute()[0])

    def decr(self, key: str) -> None:
        if self.client.decr(key) < 0:
            self.client.delete(key)

    def set(self, key: str, ttl: int) -> None:
        self.client.set(key, 1, ex=ttl)

    def delete(self, key: str) -> None:
        self.client.delete(key)

    def ttl(self, key: str) -> float | None:
        remaining = self.client.pttl(key)
        return remaining / 1000 if remaining and remaining > 0 else None


_memory = _MemoryStore()
_fallback_logged = 0.0


@dataclass
class Attempt:
    """One login attempt, counted before the password is checked."""

    username: str
    client: str
    user_failures: int = 0
    client_failures: int = 0
    locked_until: datetime | None = None
    whole_client: bool = False  # the lock is on the client, not only on this username from it

    @property
    def refused(self) -> bool:
        return self.locked_until is not None


class LoginThrottle:
    def __init__(self) -> None:
        self.limit = settings.MESHBOARD_LOGIN_FAILURES
        self.client_limit = settings.MESHBOARD_LOGIN_CLIENT_FAILURES
        self.lockout = settings.MESHBOARD_LOGIN_LOCKOUT_SECONDS

    def _keys(self, attempt: Attempt) -> dict[str, str]:
        pair = f"{attempt.client}:{_user_key(attempt.username)}"
        return {
            "pair_failures": f"{PREFIX}:failures:pair:{pair}",
            "pair_lock": f"{PREFIX}:lock:pair:{pair}",
            "client_failures": f"{PREFIX}:failures:client:{attempt.client}",
            "client_lock": f"{PREFIX}:lock:client:{attempt.client}",
        }

    def _run(
        self, operation: str, fn: Callable[[_RedisStore | _MemoryStore, dict[str, str]], None], attempt: Attempt
    ) -> None:
        """Run `fn(store, keys)` against Redis, or against this process's counts when Redis fails."""
        global _fallback_logged
        keys = self._keys(attempt)
        try:
            with page_redis_breaker():
                fn(_RedisStore(page_redis_client()), keys)
            return
        except redis.RedisError as exc:
            now = time.monotonic()
            if now - _fallback_logged > 60:
                _fallback_logged = now
                log.warning(
                    "login throttle: Redis unreachable (%s) while %s; counting failed logins in this process only",
                    exc,
                    operation,
                )
        fn(_memory, keys)

    def begin(self, username: str, client: str) -> Attempt:
        """Count the attempt; `refused` when the pair or the client is locked out (check no password then)."""
        attempt = Attempt(username, client)

        def count(store: _RedisStore | _MemoryStore, keys: dict[str, str]) -> None:
            for lock, whole in (("client_lock", True), ("pair_lock", False)):
                remaining = store.ttl(keys[lock])
                if remaining is not None:
                    attempt.locked_until = datetime.now(UTC) + timedelta(seconds=remaining)
                    attempt.whole_client = whole
                    return
            attempt.user_failures = store.incr(keys["pair_failures"], self.lockout)
            attempt.client_failures = store.incr(keys["client_failures"], self.lockout)
            # Beyond the limit only when parallel attempts raced past the one that reached it: refuse them.
            over_client = attempt.client_failures > self.client_limit
            if over_client or attempt.user_failures > self.limit:
                self._lock(store, keys, attempt, whole=over_client)

        self._run("counting an attempt", count, attempt)
        return attempt

    def _lock(self, store: _RedisStore | _MemoryStore, keys: dict[str, str], attempt: Attempt, *, whole: bool) -> None:
        prefix = "client" if whole else "pair"
        store.set(keys[f"{prefix}_lock"], self.lockout)
        store.delete(keys[f"{prefix}_failures"])
        attempt.locked_until = datetime.now(UTC) + timedelta(seconds=self.lockout)
        attempt.whole_client = whole

    def failed(self, attempt: Attempt) -> None:
        """The password was wrong (or the user unknown): lock the pair or the client when it reached its limit."""

        def judge(store: _RedisStore | _MemoryStore, keys: dict[str, str]) -> None:
            if attempt.client_failures >= self.client_limit:
                self._lock(store, keys, attempt, whole=True)
            elif attempt.user_failures >= self.limit:
                self._lock(store, keys, attempt, whole=False)

        self._run("recording a failure", judge, attempt)

    def succeeded(self, attempt: Attempt) -> None:
        """The right password: forget this pair's failures; this attempt no longer counts against the client."""

        def forget(store: _RedisStore | _MemoryStore, keys: dict[str, str]) -> None:
            store.delete(keys["pair_failures"])
            store.decr(keys["client_failures"])

        self._run("forgetting failures", forget, attempt)


def lockout_message(attempt: Attempt) -> str:
    until = attempt.locked_until or datetime.now(UTC)
    minutes = max(1, round((until - datetime.now(UTC)).total_seconds() / 60))
    when = f"{until:%H:%M:%S} UTC (in about {minutes} minute{'s' if minutes != 1 else ''})"
    if attempt.whole_client:
        return f"Too many failed logins from your address. Try again after {when}."
    return (
        f"Too many failed logins for this username from your address. Try again after {when}, or log in from "
        "another address."
    )


class ThrottledLoginMixin:
    """AuthenticationForm.clean with the throttle around authenticate(); the rest of the form is Django's."""

    request: HttpRequest | None
    cleaned_data: dict
    user_cache: object

    def clean(self) -> dict:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password:
            return self.cleaned_data
        client = client_address(self.request) if self.request is not None else "unknown"
        throttle = LoginThrottle()
        attempt = throttle.begin(username, client)
        if attempt.refused:
            log.warning(
                "login refused: username=%r client=%s locked out until %s (%s)",
                username,
                client,
                f"{attempt.locked_until:%Y-%m-%d %H:%M:%S} UTC",
                "every username from this client" if attempt.whole_client else "this username from this client",
            )
            raise forms.ValidationError(lockout_message(attempt), code="locked_out")
        self.user_cache = authenticate(self.request, username=username, password=password)
        if self.user_cache is None:
            throttle.failed(attempt)
            locked = f"; locked out until {attempt.locked_until:%Y-%m-%d %H:%M:%S} UTC" if attempt.refused else ""
            log.warning(
                "login failed: username=%r client=%s failures: %d of %d for this username from this client, "
                "%d of %d from this client%s",
                username,
                client,
                attempt.user_failures,
                throttle.limit,
                attempt.client_failures,
                throttle.client_limit,
                locked,
            )
            if attempt.refused:
                raise forms.ValidationError(
                    [self.get_invalid_login_error(), forms.ValidationError(lockout_message(attempt), "locked_out")]
                )
            raise self.get_invalid_login_error()
        throttle.succeeded(attempt)
        self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass


class ThrottledLoginView(LoginView):
    """The login page: the local form while local accounts are on, the single sign-on button while it is set up."""

    form_class = LoginForm

    def get_context_data(self, **kwargs: object) -> dict:
        return {
            **super().get_context_data(**kwargs),
            "local_login": settings.MESHBOARD_LOCAL_LOGIN,
            "single_sign_on": settings.MESHBOARD_OIDC,
        }

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not settings.MESHBOARD_LOCAL_LOGIN:
            log.warning("local login refused (MESHBOARD_LOCAL_LOGIN=0) from %s", client_address(request))
            # An unbound form: a bound one would check the password on rendering (and count a failure).
            refused = "Local accounts are turned off here: sign in with single sign-on."
            response = self.render_to_response(self.get_context_data(form=self.form_class(request), refused=refused))
            response.status_code = 403
            return response
        return super().post(request, *args, **kwargs)


login = ThrottledLoginView.as_view()
