"""403s on the `django.request` logger as one line each.

Django logs every PermissionDenied with its traceback (`log_response(..., exception=exc)`): a page of stack for what
is an ordinary answer (a viewer pressed Apply). The refusal's reason says all there is to know, so the record keeps
the method, path, user and reason, repr()-quoted (they come from users: no forged log lines), and drops the traceback.
Other statuses pass untouched: a 500's traceback is what someone needs.
"""

from __future__ import annotations

import logging


class OneLineForbidden(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) != 403 or not record.exc_info:
            return True
        exc = record.exc_info[1]
        request = getattr(record, "request", None)
        user = getattr(request, "user", None)
        who = user.get_username() if getattr(user, "is_authenticated", False) else "anonymous"
        record.msg = "Forbidden: %s %r user=%r reason=%r"
        record.args = (getattr(request, "method", "?"), getattr(request, "path", "?"), who, str(exc))
        record.exc_info = None
        record.exc_text = None
        return True
