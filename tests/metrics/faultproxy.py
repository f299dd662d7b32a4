"""A tiny HTTP proxy in front of a real Prometheus that can delay answers or fail chosen requests (no client mocks),
and logs every request it received."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay = 0.0
        self.fail_pattern: re.Pattern[str] | None = None  # requests whose URL matches get `fail_status`
        self.fail_status = 503
        self.fail_body: bytes | None = None  # None: a Prometheus error object
        self.fail_times: int | None = None  # None: always
        self.requests: list[str] = []  # the path and query of each request received, in order
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.unquote_plus(self.path)
                proxy.requests.append(url)
                if proxy.delay:
                    time.sleep(proxy.delay)
                if proxy.fail_pattern is not None and proxy.fail_pattern.search(url) and proxy.fail_times != 0:
                    if proxy.fail_times is not None:
                        proxy.fail_times -= 1
                    if proxy.fail_body is not None:
                        return self._send(proxy.fail_status, proxy.fail_body, "text/html")
                    body = b'{"status":"error","errorType":"unavailable","error":"injected fault"}'
                    return self._send(proxy.fail_status, body)
                try:
                    with urllib.request.urlopen(proxy.upstream + self.path, timeout=30) as response:
                        return self._send(response.status, response.read())
                except urllib.error.HTTPError as exc:
                    return self._send(exc.code, exc.read())

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, pattern: str, *, status: int = 503, times: int | None = None, body: bytes | None = None) -> None:
        """Requests matching `pattern` get `status` with a Prometheus error object, or with `body` as HTML."""
        self.fail_pattern, self.fail_status, self.fail_times = re.compile(pattern), status, times
        self.fail_body = body

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
