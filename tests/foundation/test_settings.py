"""Settings come from the environment and stop the process with a clear message on bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL"}}
    base["DJANGO_SETTINGS_MODULE"] = "meshboard.settings"
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "x" * 50, "DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        (
            {"SECRET_KEY": "x" * 50, "MESHBOARD_DEFAULT_POLL_SECONDS": "0"},
            "MESHBOARD_DEFAULT_POLL_SECONDS='0' is out of range",
        ),
        (
            {"SECRET_KEY": "x" * 50, "MESHBOARD_TICK_SECONDS": "soon"},
            "MESHBOARD_TICK_SECONDS='soon' is not a number",
        ),
        ({"SECRET_KEY": "x" * 50, "REDIS_URL": "localhost:6379"}, "REDIS_URL='localhost:6379' is not a URL"),
        ({"SECRET_KEY": "x" * 50, "DATABASE_URL": "mongodb://db/x"}, "DATABASE_URL is not a database URL"),
        ({"SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": " , "}, "ALLOWED_HOSTS is set but empty"),
    ],
)
def test_it_refuses_to_start_on_bad_settings(env: dict[str, str], message: str) -> None:
    result = _check(env)
    assert result.returncode != 0
    assert message in result.stderr


def test_it_starts_with_a_secret_key_only(tmp_path: Path) -> None:
    result = _check({"SECRET_KEY": "x" * 50, "MESHBOARD_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_it_reads_postgres_from_database_url() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings; d = settings.DATABASES['default'];"
        "print(d['ENGINE'], d['HOST'], d['PORT'], d['NAME'], d['USER'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "meshboard.settings",
            "SECRET_KEY": "x" * 50,
            "DATABASE_URL": "postgres://mb:pw@db.example:5433/meshboard",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["django.db.backends.postgresql", "db.example", "5433", "meshboard", "mb"]


def test_debug_without_a_secret_key_gets_a_random_key_per_process(tmp_path: Path) -> None:
    """No fixed, public key that would let anyone forge sessions of a DEBUG=1 instance."""
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    env.update(DEBUG="1", MESHBOARD_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="meshboard.settings")
    keys = [
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert keys[0] != keys[1] and all(len(key) >= 50 for key in keys)


def test_every_setting_read_from_the_environment_is_in_the_readme() -> None:
    import re

    names = set(
        re.findall(r'env_(?:str|bool|int|float|list|url)\("([A-Z_0-9]+)"', (ROOT / "meshboard/settings.py").read_text())
    )
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Settings") :]
    # A group of variables may be listed once with its common prefix: `MESHBOARD_HEALTH_5XX_DEGRADED`, `_5XX_FAILING`.
    missing = [
        name
        for name in sorted(names)
        if f"`{name}`" not in table and f"`_{'_'.join(name.split('_')[-2:])}`" not in table
    ]
    assert names and not missing, f"not in the README's settings table: {missing}"
