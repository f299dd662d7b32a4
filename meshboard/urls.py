from django.contrib import admin
from django.urls import include, path

from apps.clusters.views import readyz
from apps.core import csp
from apps.core.login_throttle import AdminLoginForm
from apps.core.login_throttle import login as throttled_login
from apps.core.theme import set_theme
from apps.core.views import healthz

# 403 names the role a refused action needs; 404.html and 500.html are Django's own handlers' templates.
handler403 = "apps.core.error_pages.forbidden"

# The admin's login form counts failures as the site's does (apps/core/login_throttle.py).
admin.site.login_form = AdminLoginForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", throttled_login, name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    # OpenID Connect: /oidc/authenticate/ starts a single sign-on, /oidc/callback/ ends it (apps/clusters/sso.py).
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("csp-report", csp.report, name="csp-report"),
    path("theme", set_theme, name="theme"),
    path("", include("apps.overview.urls")),
    path("", include("apps.canary.urls")),
    path("", include("apps.graph.urls")),
    path("", include("apps.policies.urls")),
    path("", include("apps.migration.urls")),
    path("", include("apps.history.urls")),
    path("", include("apps.search.urls")),
]
