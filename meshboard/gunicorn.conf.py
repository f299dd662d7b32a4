"""gunicorn settings for Meshboard's web process (`gunicorn -c meshboard/gunicorn.conf.py meshboard.wsgi`).

Threaded workers: a page that waits on a slow dependency (a chart's range query, at most
MESHBOARD_CHART_READ_TIMEOUT) holds one thread, not a whole process, so other viewers keep being served.
"""

import os

bind = os.environ.get("MESHBOARD_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("MESHBOARD_WEB_WORKERS", "2"))
threads = int(os.environ.get("MESHBOARD_WEB_THREADS", "8"))
timeout = 30  # seconds a request may take before gunicorn restarts the worker
graceful_timeout = 20
accesslog = "-"
