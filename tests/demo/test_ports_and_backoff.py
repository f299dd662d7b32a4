"""The supervisor's small parts: the port check (TIME-WAIT sockets are not "in use"), the backoff, exit wording."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from lab.supervise import Backoff, describe_exit, port_free

ROOT = Path(__file__).resolve().parents[2]


def _tcp_states(port: int) -> set[str]:
    """States (hex, as /proc/net/tcp writes them) of the IPv4 sockets whose local port is `port`."""
    states = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            states.add(fields[3])
    return states


def _time_wait_port() -> int:
    """A port whose only socket is in TIME-WAIT: a server that accepted a connection and closed it first."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first, so its side ends in TIME-WAIT
        client.close()
    return port


def test_it_does_not_count_time_wait_sockets_as_busy():
    port = _time_wait_port()
    assert _tcp_states(port) == {"06"}, "the port has only a TIME-WAIT socket"
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what the old check did, and why it refused such a port

    assert port_free(port)


def test_it_counts_a_listening_socket_as_busy():
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not port_free(listener.getsockname()[1])


def test_the_demo_refuses_a_port_in_use_and_names_the_variable(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
        env |= {"MESHBOARD_DEMO_STATE": str(tmp_path), "MESHBOARD_DEMO_PORT": str(port)}
        result = subprocess.run(
            [str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert f"demo: port {port} (web) is in use; pick another with MESHBOARD_DEMO_PORT=<port> make demo" in result.stdout
    assert not (tmp_path / "demo.json").exists(), "nothing was started"


def test_it_backs_off_from_1_s_to_30_s_and_starts_again_after_a_long_run():
    backoff = Backoff()
    assert [backoff.next_delay(ran_for=0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.next_delay(ran_for=120) == 1


def test_it_says_how_a_process_ended():
    assert describe_exit(1) == "code 1"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(None) == "did not start"
