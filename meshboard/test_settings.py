"""Settings for the test suite: the production settings with test-only defaults for what must otherwise be set."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key")

from .settings import *  # noqa: F403
from .settings import DATABASES, VAR_DIR

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not SQLite's shared in-memory cache, so the in-process Celery worker thread sees committed rows and
    # waits on locks instead of failing with "database table is locked".
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# WhiteNoise warns when STATIC_ROOT is missing; tests serve nothing from it.
STATIC_ROOT = VAR_DIR / "test-static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
