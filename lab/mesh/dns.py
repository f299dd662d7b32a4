"""A tiny DNS server for the lab's "external" hosts: the cluster DNS the sidecars' c-ares resolver asks (see the
bootstrap in lab/mesh/envoy.py), so an egress cluster of type STRICT_DNS resolves `books.example.com` as on a pod.

UDP only, one question per query: an A record for a known host (TTL 5 s), no answer for its other record types
(AAAA: NODATA, so Envoy falls back to IPv4), NXDOMAIN for any other name.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

A, IN = 1, 1


def answer(query: bytes, table: dict[str, str]) -> bytes | None:
    """The response to one DNS query (None for what is not a query)."""
    if len(query) < 12:
        return None
    tid, flags, qdcount = struct.unpack(">HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    i, labels = 12, []
    while i < len(query) and query[i]:
        n = query[i]
        labels.append(query[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    if i + 5 > len(query):
        return None
    qtype, qclass = struct.unpack(">HH", query[i + 1 : i + 5])
    question = query[12 : i + 5]
    address = table.get(".".join(labels).lower().rstrip("."))
    rd = flags & 0x0100
    if address is None:
        return struct.pack(">HHHHHH", tid, 0x8083 | rd, 1, 0, 0, 0) + question  # NXDOMAIN
    if (qtype, qclass) != (A, IN):
        return struct.pack(">HHHHHH", tid, 0x8080 | rd, 1, 0, 0, 0) + question  # NODATA
    record = b"\xc0\x0c" + struct.pack(">HHIH", A, IN, 5, 4) + socket.inet_aton(address)
    return struct.pack(">HHHHHH", tid, 0x8480 | rd, 1, 1, 0, 0) + question + record  # authoritative


class DnsServer:
    """`DnsServer({"books.example.com": "127.0.0.1"}).start()`; `port` is where it listens on 127.0.0.1 (UDP)."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = {k.lower(): v for k, v in table.items()}
        self.queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def start(self) -> DnsServer:
        self._thread = threading.Thread(target=self._serve, name="lab-dns", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self._sock.recvfrom(1500)
            except (TimeoutError, OSError):
                continue
            response = answer(query, self.table)
            if response is not None:
                self.queries += 1
                with contextlib.suppress(OSError):
                    self._sock.sendto(response, peer)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._sock.close()
