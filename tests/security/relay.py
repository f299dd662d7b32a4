"""A second client address on one machine: a TCP relay whose connections to the server come from 127.0.0.2.

Linux answers every address of 127.0.0.0/8 on the loopback, but picks 127.0.0.1 as the source of any connection
to it, so a browser on this machine always reaches a server as 127.0.0.1. The relay listens on 127.0.0.1 (a free
port) and opens each upstream connection bound to `source` (127.0.0.2): the server sees REMOTE_ADDR 127.0.0.2, as
it would see a client elsewhere, with no header for it to trust.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    def __init__(self, upstream: tuple[str, int], source: str = "127.0.0.2") -> None:
        self.upstream, self.source = upstream, source
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> Relay:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10, source_address=(self.source, 0))
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            self._sockets += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
