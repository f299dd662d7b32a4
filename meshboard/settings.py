"""Meshboard settings. Everything that differs between deployments comes from the environment (see README)."""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_float, env_int, env_list, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MESHBOARD_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set; set it (any long random string) or set DEBUG=1 for local use"
        )
    # Local development only: a random key for this process, never a fixed one that anyone could read here and use
    # to forge sessions. Sessions and password-reset links end when the process restarts; run one web process.
    SECRET_KEY = secrets.token_urlsafe(50)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# MESHBOARD_HTTPS=1: users reach Meshboard over HTTPS only, through a TLS-terminating proxy (an ingress, Caddy,
# nginx) that sets X-Forwarded-Proto. Cookies are sent over HTTPS only (and get the __Host- prefix, so no other host
# of the domain can set them), plain HTTP is redirected, and browsers are told to use HTTPS from then on (HSTS).
# `manage.py check --deploy` is clean in this mode (tests/security/test_https_mode.py).
MESHBOARD_HTTPS = env_bool("MESHBOARD_HTTPS", False)
# How many proxies in front of Meshboard append the client's address to X-Forwarded-For. 0: the client is the
# peer of the TCP connection (REMOTE_ADDR). Behind one TLS proxy set 1, and make sure nothing but the proxy can
# reach Meshboard: the login throttle trusts the address the last N proxies give (apps/core/login_throttle.py).
MESHBOARD_TRUSTED_PROXIES = env_int("MESHBOARD_TRUSTED_PROXIES", 0, minimum=0, maximum=5)
if MESHBOARD_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Probes (the kubelet, compose's healthcheck) ask over plain HTTP from inside; a redirect would fail them.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_NAME = "__Host-meshboard-session"
    CSRF_COOKIE_NAME = "__Host-meshboard-csrftoken"
    SECURE_HSTS_SECONDS = env_int("MESHBOARD_HSTS_SECONDS", 31_536_000, minimum=0, maximum=63_072_000)
    # The host name Meshboard answers on is the one HSTS covers; its subdomains, if any, are Meshboard's too.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading asks browser vendors to hard-code HTTPS for a registrable domain and every name under it, a
    # decision for the domain's owner, not for an app on one host name; off unless asked for.
    SECURE_HSTS_PRELOAD = env_bool("MESHBOARD_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]  # "SECURE_HSTS_PRELOAD is not True": deliberate, see above
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",
    "django_htmx",
    "mozilla_django_oidc",
    "template_partials",
    "apps.core",
    "apps.clusters",
    "apps.mesh",
    "apps.metrics",
    "apps.history",
    "apps.overview",
    "apps.canary",
    "apps.graph",
    "apps.policies",
    "apps.migration",
    "apps.search",
]

# The header middlewares come before WhiteNoise, which answers static files itself and skips every middleware after
# it: so static files get the same headers as pages (HSTS, nosniff, Referrer-Policy, COOP from SecurityMiddleware;
# the CSP; X-Frame-Options).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A static file asked for with its content's digest is kept by the browser for good (WhiteNoise answers below).
    "apps.core.static_versions.ImmutableStaticMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Large JSON answers gzipped, after the internal addresses are hidden in them (below).
    "apps.core.compress.CompressJsonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A user limited to namespaces reads only theirs, in every snapshot query of the request.
    "apps.clusters.scope.NamespaceScopeMiddleware",
    # Internal addresses (API servers, Prometheus, Redis) in a viewer's page become "[internal address: ...]".
    "apps.clusters.addresses.HideInternalAddressesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

# Content-Security-Policy (django-csp): no inline script, no eval, nothing from another origin. Everything shown
# comes from clusters we do not control; the policy is the second line of defence after escaping. Styles allow
# 'unsafe-inline' because Plotly sets element styles while drawing; scripts never do. Browsers report violations
# to /csp-report, which logs each one (apps/core/csp.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "report-uri": "/csp-report",
        "upgrade-insecure-requests": MESHBOARD_HTTPS,
    },
}

ROOT_URLCONF = "meshboard.urls"
WSGI_APPLICATION = "meshboard.wsgi.application"
ASGI_APPLICATION = "meshboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.core.context_processors.navigation",
                "apps.clusters.context_processors.roles",
                "apps.clusters.status.machinery",
                "apps.core.theme.theme",
            ],
            # The icons, breadcrumbs and health badges of every page (apps/core/templatetags/ui.py).
            "builtins": ["apps.core.templatetags.ui"],
        },
    },
]

_default_db = f"sqlite:///{VAR_DIR / 'meshboard.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _default_db), conn_max_age=60)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL Meshboard understands: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The web process, the worker and beat share one SQLite file: wait for a lock rather than fail at once, and
    # write-ahead logging, so that a writer (a collection's transaction, even one whose process is stopped mid-commit)
    # never keeps the pages from reading: in SQLite's default rollback journal, a commit locks readers out.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
# Login throttling (apps/core/login_throttle.py) in Redis: after this many failed logins for one username from
# one client address, that pair is locked out for MESHBOARD_LOGIN_LOCKOUT_SECONDS; the same username from another
# address still logs in, so nobody can lock an operator out from elsewhere. A client address with this many failures
# over all usernames is locked out altogether. Failures count until LOCKOUT seconds pass without one.
MESHBOARD_LOGIN_FAILURES = env_int("MESHBOARD_LOGIN_FAILURES", 10, minimum=1, maximum=1000)
MESHBOARD_LOGIN_CLIENT_FAILURES = env_int("MESHBOARD_LOGIN_CLIENT_FAILURES", 50, minimum=1, maximum=100_000)
MESHBOARD_LOGIN_LOCKOUT_SECONDS = env_int("MESHBOARD_LOGIN_LOCKOUT_SECONDS", 900, minimum=1, maximum=86_400)

# Local accounts (username and password) and single sign-on through OpenID Connect (apps/clusters/sso.py). Local
# login stays the break-glass way in while the identity provider is down; MESHBOARD_LOCAL_LOGIN=0 turns it off once
# single sign-on works (then only OIDC accounts sign in, the admin included).
MESHBOARD_LOCAL_LOGIN = env_bool("MESHBOARD_LOCAL_LOGIN", True)
OIDC_RP_CLIENT_ID = env_str("MESHBOARD_OIDC_CLIENT_ID", "")
MESHBOARD_OIDC = bool(OIDC_RP_CLIENT_ID)  # single sign-on is on when a client id is set
OIDC_RP_CLIENT_SECRET = env_str("MESHBOARD_OIDC_CLIENT_SECRET", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("MESHBOARD_OIDC_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = env_str("MESHBOARD_OIDC_TOKEN_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = env_str("MESHBOARD_OIDC_JWKS_ENDPOINT", "")
# Optional: the claims are read from the signed ID token (Entra ID puts app roles there, not in userinfo); the
# userinfo answer, when an endpoint is given, adds what the ID token lacks.
OIDC_OP_USER_ENDPOINT = env_str("MESHBOARD_OIDC_USERINFO_ENDPOINT", "")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = env_str("MESHBOARD_OIDC_SCOPES", "openid email profile")
OIDC_TIMEOUT = 10
LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/"
# The claim → role mapping: the claim holding the user's roles (Entra ID app roles: `roles`; not `groups`, which
# Entra ID leaves out of the token for a user in too many groups), and its values for each role. A value followed by
# `:<namespace>` gives the role in that namespace only: `Meshboard.Operator:team-a` (see README, single sign-on).
MESHBOARD_OIDC_ROLES_CLAIM = env_str("MESHBOARD_OIDC_ROLES_CLAIM", "roles")
MESHBOARD_OIDC_VIEWER_ROLES = env_list("MESHBOARD_OIDC_VIEWER_ROLES", ["Meshboard.Viewer"])
MESHBOARD_OIDC_OPERATOR_ROLES = env_list("MESHBOARD_OIDC_OPERATOR_ROLES", ["Meshboard.Operator"])
MESHBOARD_OIDC_USERNAME_CLAIM = env_str("MESHBOARD_OIDC_USERNAME_CLAIM", "preferred_username")
if MESHBOARD_OIDC:
    _missing = [
        f"MESHBOARD_OIDC_{name}"
        for name, value in (
            ("CLIENT_SECRET", OIDC_RP_CLIENT_SECRET),
            ("AUTHORIZATION_ENDPOINT", OIDC_OP_AUTHORIZATION_ENDPOINT),
            ("TOKEN_ENDPOINT", OIDC_OP_TOKEN_ENDPOINT),
            ("JWKS_ENDPOINT", OIDC_OP_JWKS_ENDPOINT),
        )
        if not value
    ]
    if _missing:
        raise ImproperlyConfigured(f"MESHBOARD_OIDC_CLIENT_ID is set; set {', '.join(_missing)} too")
elif not MESHBOARD_LOCAL_LOGIN:
    raise ImproperlyConfigured(
        "MESHBOARD_LOCAL_LOGIN=0 without single sign-on (MESHBOARD_OIDC_CLIENT_ID): nobody could log in"
    )
AUTHENTICATION_BACKENDS = ["apps.clusters.sso.LocalBackend"]
if MESHBOARD_OIDC:
    AUTHENTICATION_BACKENDS.append("apps.clusters.sso.OIDCBackend")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# WhiteNoise serves what `collectstatic` put in STATIC_ROOT (the image does it at build) and, so that no way of
# starting Meshboard ends with pages without CSS and JS, also the source folders the finders know (static/ and the
# apps' static/). Both hold the same files: the storage neither renames nor compresses them. Their URLs carry a
# digest of the content served; a request with the current digest is kept by browsers for good
# (apps/core/static_versions.py).
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "apps.core.static_versions.VersionedStaticFilesStorage"},
}

# Redis is both the Celery broker and the home of the collection locks.
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"))
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
# Each kind of collection has its own queue (and, in production, its own worker), so a Prometheus outage that holds
# the metrics worker never delays Kubernetes data, and the reverse. The tick has a queue of its own that every worker
# also consumes, so either worker alone keeps the schedule going.
MESHBOARD_QUEUES = {"cluster": "cluster", "metrics": "metrics", "tick": "tick"}
CELERY_TASK_ROUTES = {
    "mesh.collect_cluster": {"queue": MESHBOARD_QUEUES["cluster"]},
    "metrics.collect_metrics": {"queue": MESHBOARD_QUEUES["metrics"]},
    "clusters.tick": {"queue": MESHBOARD_QUEUES["tick"]},
}
# Each worker also consumes a queue of its own (`<name>.dq2`), so the tick can hand each collection to the next worker
# in turn and many workers share a fleet's clusters evenly (apps/clusters/tasks.py).
CELERY_WORKER_DIRECT = True
# Beat's scheduler writes beat's heartbeat from inside beat's own loop.
CELERY_BEAT_SCHEDULER = "apps.core.heartbeats:HeartbeatScheduler"

# How often beat looks for clusters that are due; each cluster has its own poll interval on top of this.
MESHBOARD_TICK_SECONDS = env_float("MESHBOARD_TICK_SECONDS", 5.0, minimum=0.5, maximum=300)
# After n consecutive failed collections of a cluster (per kind), the next attempt waits 2^(n-1) x this many seconds,
# capped at the cluster's poll interval (permanent errors wait the full poll interval).
MESHBOARD_RETRY_BASE_SECONDS = env_float("MESHBOARD_RETRY_BASE_SECONDS", 2.0, minimum=0.5, maximum=300)
# Beat and every worker write a heartbeat to Redis this often; one missing for 3 periods counts as not running.
MESHBOARD_HEARTBEAT_SECONDS = env_float("MESHBOARD_HEARTBEAT_SECONDS", 10.0, minimum=1, maximum=300)
# Poll interval given to clusters created without one.
MESHBOARD_DEFAULT_POLL_SECONDS = env_int("MESHBOARD_DEFAULT_POLL_SECONDS", 15, minimum=5, maximum=3600)
# Timeouts for one Kubernetes API call: connect, then read.
MESHBOARD_KUBE_CONNECT_TIMEOUT = env_float("MESHBOARD_KUBE_CONNECT_TIMEOUT", 3.0, minimum=0.1, maximum=60)
MESHBOARD_KUBE_READ_TIMEOUT = env_float("MESHBOARD_KUBE_READ_TIMEOUT", 20.0, minimum=0.1, maximum=300)
# Timeouts for one Prometheus query: connect, then read.
MESHBOARD_PROMETHEUS_CONNECT_TIMEOUT = env_float("MESHBOARD_PROMETHEUS_CONNECT_TIMEOUT", 3.0, minimum=0.1, maximum=60)
MESHBOARD_PROMETHEUS_READ_TIMEOUT = env_float("MESHBOARD_PROMETHEUS_READ_TIMEOUT", 20.0, minimum=0.1, maximum=300)
# Read timeout of a chart's range queries (on the request path, so shorter than the collectors').
MESHBOARD_CHART_READ_TIMEOUT = env_float("MESHBOARD_CHART_READ_TIMEOUT", 2.0, minimum=0.1, maximum=120)
# After a chart query times out, chart requests to that Prometheus fail at once for this long.
MESHBOARD_CHART_BREAKER_SECONDS = env_float("MESHBOARD_CHART_BREAKER_SECONDS", 30.0, minimum=1, maximum=3600)
MESHBOARD_PAGE_REDIS_TIMEOUT = env_float("MESHBOARD_PAGE_REDIS_TIMEOUT", 0.3, minimum=0.05, maximum=10)
# A collection run is stopped past this many seconds (the lock expires a little later).
MESHBOARD_COLLECT_TIME_LIMIT = env_int("MESHBOARD_COLLECT_TIME_LIMIT", 120, minimum=5, maximum=3600)
# Run records kept per cluster and kind; older ones are pruned after each run.
MESHBOARD_RUNS_KEPT = env_int("MESHBOARD_RUNS_KEPT", 200, minimum=10, maximum=100_000)

# Service health, as Kiali's defaults: the share of requests answered 5xx (or 4xx) that makes a service degraded or
# failing, and the share of pods not ready that does the same. Ratios, 0..1.
MESHBOARD_HEALTH = {
    "5xx_degraded": env_float("MESHBOARD_HEALTH_5XX_DEGRADED", 0.0, minimum=0, maximum=1),
    "5xx_failing": env_float("MESHBOARD_HEALTH_5XX_FAILING", 0.10, minimum=0, maximum=1),
    "4xx_degraded": env_float("MESHBOARD_HEALTH_4XX_DEGRADED", 0.10, minimum=0, maximum=1),
    "4xx_failing": env_float("MESHBOARD_HEALTH_4XX_FAILING", 0.20, minimum=0, maximum=1),
}
# Configuration history (apps/history): versions older than this many days are trimmed (each object keeps its last
# version before the cut), and each object keeps at most this many versions.
MESHBOARD_HISTORY_DAYS = env_int("MESHBOARD_HISTORY_DAYS", 30, minimum=1, maximum=3650)
MESHBOARD_HISTORY_MAX_VERSIONS = env_int("MESHBOARD_HISTORY_MAX_VERSIONS", 500, minimum=2, maximum=1_000_000)
# Rows per page on the overview.
MESHBOARD_PAGE_SIZE = env_int("MESHBOARD_PAGE_SIZE", 50, minimum=5, maximum=1000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # A refusal (403) is one line with who and why, not a traceback (apps/core/request_log.py).
    "filters": {"one_line_403": {"()": "apps.core.request_log.OneLineForbidden"}},
    "loggers": {"django.request": {"filters": ["one_line_403"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
