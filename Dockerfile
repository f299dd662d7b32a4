# One image for web, the workers and beat (docker-compose.yml, deploy/kubernetes/).
#
# The base is pinned by tag and digest (python 3.11.14, Debian bookworm, the multi-platform index): a rebuild gets
# the same OS and Python until someone moves the pin on purpose. Two stages: the build stage installs the
# packages into a virtualenv; the run stage gets that virtualenv and the code, without pip, setuptools or wheel
# (no package can be installed into a running container), and runs as an unprivileged user.

FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml ./
COPY meshboard ./meshboard
COPY apps ./apps
COPY lab ./lab
RUN /opt/venv/bin/pip install . \
 && /opt/venv/bin/pip uninstall --yes pip setuptools wheel

FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH STATIC_ROOT=/app/staticfiles
# The base image's own pip and setuptools go too: nothing builds or installs at run time.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && useradd --create-home --uid 1000 --user-group meshboard
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY meshboard ./meshboard
COPY apps ./apps
COPY lab ./lab
COPY templates ./templates
COPY static ./static
COPY manage.py ./
COPY pyproject.toml ./
# Static files are collected at build, so the root filesystem can be read-only at run time (whitenoise serves them).
RUN DEBUG=1 python manage.py collectstatic --noinput
# uid 1000 keeps Docker Compose's mounted kubeconfig readable; Kubernetes runs the pods as uid 10001 (its
# securityContext), which works because everything under /app and /opt/venv is world-readable and nothing there
# is written at run time.
USER 1000:1000
EXPOSE 8000
# Docker's healthcheck (Kubernetes ignores it and probes /healthz and /readyz itself). It asks the web process on
# the port of MESHBOARD_BIND; the worker and beat containers of docker-compose.yml override it with their own.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('MESHBOARD_BIND', '0.0.0.0:8000').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=3)"]
CMD ["gunicorn", "-c", "meshboard/gunicorn.conf.py", "meshboard.wsgi:application"]
