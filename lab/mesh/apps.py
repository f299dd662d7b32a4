"""The tiny apps behind the sidecars, run as threads of the lab's process, all on 127.0.0.1.

Servers: `HttpApp` (bookstore v1/v2, bookwarehouse; settable error rate and latency) and `TcpEchoApp` (mysql: answers
each line). Clients: `HttpClient` (bookbuyer, bookthief, bookstore's restocking) and `TcpClient` (bookwarehouse's
queries), each at a bounded rate, for a bounded time, sending through its own sidecar's outbound listener and counting
what came back, so tests can compare Prometheus with the generator's own numbers.
Servers disable Nagle and buffer their writes (reference lab-mesh.md gotcha 7: otherwise a 40 ms floor per request).
Each HTTP client names itself in an `x-lab-client` header and servers count answers per client too, so what a sidecar
did in between (retries: more attempts reached the app than the client sent) can be counted from both ends.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import socketserver
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CLIENT_HEADER = "x-lab-client"


@dataclass
class Behaviour:
    """How a server answers: the share of HTTP 500s and a uniform latency range in milliseconds.

    Errors are spread evenly, not drawn at random (`error_rate` 0.2: every fifth answer), so any window of traffic
    shows the configured rate to within one request and tests can compare it with Prometheus tightly.
    """

    error_rate: float = 0.0
    latency_ms_min: float = 1.0
    latency_ms_max: float = 5.0

    def __post_init__(self) -> None:
        self._credit = 0.0
        self._lock = threading.Lock()

    def delay(self) -> float:
        lo, hi = sorted((max(0.0, self.latency_ms_min), max(0.0, self.latency_ms_max)))
        return random.uniform(lo, hi) / 1000.0

    def fails(self) -> bool:
        with self._lock:
            self._credit += min(1.0, max(0.0, self.error_rate))
            if self._credit >= 1.0 - 1e-9:
                self._credit -= 1.0
                return True
            return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        pass


class HttpApp:
    """An HTTP/1.1 server that names itself in `x-lab-served-by` and the body; counts answers by status, and by
    (client, status) for requests that carry the lab's `x-lab-client` header."""

    def __init__(self, name: str, behaviour: Behaviour | None = None) -> None:
        self.name = name
        self.behaviour = behaviour or Behaviour()
        self.counts: Counter[int] = Counter()
        self.by_client: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            wbufsize = -1  # one write per response (headers and body together)

            def log_message(self, *args) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                b = app.behaviour
                time.sleep(b.delay())
                status = 500 if b.fails() else 200
                body = f'{{"served_by": "{app.name}", "path": "{self.path}"}}\n'.encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.send_header("x-lab-served-by", app.name)
                self.end_headers()
                self.wfile.write(body)
                with app._lock:
                    app.counts[status] += 1
                    if client := self.headers.get(CLIENT_HEADER):
                        app.by_client[(client, status)] += 1

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def start(self) -> HttpApp:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def answered(self, client: str) -> dict[str, int]:
        """Answers to one client by status (as strings, like the clients' counts)."""
        with self._lock:
            return {str(status): n for (c, status), n in sorted(self.by_client.items()) if c == client}


class TcpEchoApp:
    """A TCP service standing in for mysql: answers each line with `OK <line>`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines = 0
        app = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with contextlib.suppress(OSError):
                    for line in self.rfile:
                        self.wfile.write(b"OK " + line)
                        app.lines += 1

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> TcpEchoApp:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()


class _Paced:
    """A client loop: `rate` per second in total over `threads` workers, for at most `duration` seconds."""

    def __init__(self, name: str, rate: float, threads: int, duration: float) -> None:
        self.name = name
        self.rate = rate
        self.threads = max(1, threads)
        self.duration = duration
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self):
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), name=f"{self.name}-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def _run(self, index: int) -> None:
        if self.rate <= 0:
            return
        interval = self.threads / self.rate
        start = time.monotonic() + index * interval / self.threads
        n = 0
        state = self._open()
        try:
            while not self._stop.is_set():
                due = start + n * interval
                now = time.monotonic()
                if now - start > self.duration:
                    return
                if due > now and self._stop.wait(due - now):
                    return
                if time.monotonic() - due > 5 * interval:  # fell behind (a slow answer): skip, do not burst
                    n = int((time.monotonic() - start) / interval)
                n += 1
                state = self._once(state)
        finally:
            self._close(state)

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=20)

    def _open(self):
        return None

    def _once(self, state):
        raise NotImplementedError

    def _close(self, state) -> None:
        pass


class HttpClient(_Paced):
    """Keep-alive HTTP requests to 127.0.0.1:`port` (a sidecar's outbound listener) with Host `host`, cycling through
    `requests`.

    `counts[(served_by, status)]`: answers by the app that served them (`-` when the sidecar answered itself) and
    status; `errors`: requests that got no HTTP answer at all.
    """

    def __init__(
        self,
        name: str,
        port: int,
        requests: list[Request],
        *,
        rate: float,
        threads: int = 2,
        duration: float = 3600.0,
        host: str | None = None,
    ) -> None:
        super().__init__(name, rate, threads, duration)
        self.port = port
        self.host = host  # the Host header (the sidecar routes by it); default 127.0.0.1:<port>
        self.requests = requests
        self.counts: Counter[tuple[str, int]] = Counter()
        self.errors = 0
        self._i = 0

    def _open(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def _once(self, conn):
        with self._lock:
            req = self.requests[self._i % len(self.requests)]
            self._i += 1
        try:
            headers = {"host": self.host, **dict(req.headers)} if self.host else dict(req.headers)
            headers[CLIENT_HEADER] = self.name
            conn.request(req.method, req.path, body=b"" if req.method != "GET" else None, headers=headers)
            resp = conn.getresponse()
            resp.read()
            served_by = resp.getheader("x-lab-served-by") or "-"
            with self._lock:
                self.counts[(served_by, resp.status)] += 1
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException):
            with self._lock:
                self.errors += 1
            conn.close()
            conn = self._open()
        return conn

    def _close(self, conn) -> None:
        conn.close()

    def burst(self, n: int, connections: int = 1) -> None:
        """Send `n` more requests now, back to back over `connections` connections of their own, counted like the
        others (returns when all are answered)."""

        def send(count: int) -> None:
            conn = self._open()
            try:
                for _ in range(count):
                    conn = self._once(conn)
            finally:
                self._close(conn)

        shares = [n // connections + (1 if i < n % connections else 0) for i in range(connections)]
        workers = [threading.Thread(target=send, args=(k,), daemon=True) for k in shares if k]
        for t in workers:
            t.start()
        for t in workers:
            t.join()

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": sum(self.counts.values()) + self.errors,
                "errors": self.errors,
                "by_backend": _by_backend(self.counts),
            }


def _by_backend(counts: Counter) -> dict:
    out: dict[str, dict[str, int]] = {}
    for (served_by, status), n in sorted(counts.items()):
        out.setdefault(served_by, {})[str(status)] = n
    return out


class TcpClient(_Paced):
    """One query line at a time over a persistent TCP connection to 127.0.0.1:`port`; reconnects every 50 queries."""

    def __init__(self, name: str, port: int, *, rate: float, duration: float = 3600.0) -> None:
        super().__init__(name, rate, 1, duration)
        self.port = port
        self.ok = 0
        self.errors = 0
        self._sent = 0

    def _open(self):
        return None

    def _once(self, conn):
        try:
            if conn is None or self._sent % 50 == 0:
                if conn is not None:
                    conn.close()
                conn = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sent += 1
            conn.sendall(b"SELECT title FROM books WHERE stock < 3;\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            self.ok += 1
        except OSError:
            self.errors += 1
            if conn is not None:
                conn.close()
            conn = None
        return conn

    def _close(self, conn) -> None:
        if conn is not None:
            conn.close()

    def snapshot(self) -> dict:
        return {"requests": self.ok + self.errors, "ok": self.ok, "errors": self.errors}
