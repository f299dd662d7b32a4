"""The Dockerfile, read as text (no container engine runs here): a pinned base, nothing that builds or installs at
run time, static files collected at build, a non-root user and a healthcheck."""

from __future__ import annotations

import re

from .conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _stages() -> list[str]:
    """The Dockerfile's stages, each from its FROM line on (continued lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return ["\n".join(stage) for stage in stages]


def test_it_pins_every_base_image_by_version_and_digest() -> None:
    for stage in _stages():
        image = stage.splitlines()[0].split()[1]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", image), image


def test_it_runs_as_a_non_root_user_without_build_tools() -> None:
    final = _stages()[-1]
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and user[-1].split(":")[0].isdigit() and int(user[-1].split(":")[0]) > 0
    # The virtualenv comes from the build stage; pip, setuptools and wheel are removed from both.
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "pip uninstall --yes pip setuptools wheel" in final
    assert "pip uninstall --yes pip setuptools wheel" in _stages()[0]
    assert not re.search(r"apt-get install|gcc|build-essential|pip install", final)


def test_it_collects_static_files_at_build_and_has_a_healthcheck() -> None:
    final = _stages()[-1]
    assert re.search(r"^RUN .*manage\.py collectstatic --noinput", final, re.M)
    assert re.search(r"^HEALTHCHECK .*CMD .*/healthz", final, re.M)
    assert re.search(
        r'^CMD \["gunicorn", "-c", "meshboard/gunicorn.conf.py", "meshboard.wsgi:application"\]', final, re.M
    )
