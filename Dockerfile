# One image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN useradd --create-home --uid 1000 meshboard
COPY pyproject.toml ./
COPY meshboard ./meshboard
COPY apps ./apps
COPY lab ./lab
COPY templates ./templates
COPY static ./static
COPY manage.py ./
RUN pip install . && DEBUG=1 python manage.py collectstatic --noinput
USER meshboard
EXPOSE 8000
CMD ["gunicorn", "-c", "meshboard/gunicorn.conf.py", "meshboard.wsgi:application"]
