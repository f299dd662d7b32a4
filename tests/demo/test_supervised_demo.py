"""`make demo` supervised (issue #14 item 5), through the real scripts/demo.sh on free ports and a temporary state
folder (MESHBOARD_DEMO_STATE), so a developer's running demo is left alone:
- Prometheus or an Envoy killed: the lab mesh restarts it, the demo says so once; metrics are collected again;
- the cluster worker killed: restarted, its beat with it, the old process group (beat included) gone;
- SIGINT, as a terminal's Ctrl-C: every process of every group the demo started is gone within 15 s, no
  "stopped unexpectedly";
- the Kubernetes API stand-in killed: the demo says why it cannot go on and stops everything.

Two demo starts; the whole file takes about 35 s on two shared cores (each start ~7 s, Ctrl-C to nothing left ~6 s),
more on a busier machine. It is part of `make test`; `-m "not demo"` leaves it out.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from lab.waiting import wait_for
from tests.conftest import free_port

pytestmark = pytest.mark.demo

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_BACK = "demo: prometheus exited (killed by SIGKILL); restarting in 1 s"
WORKER_BACK = "demo: the cluster worker exited (killed by SIGKILL); restarting in 1 s"


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), which tells a pid apart from a later reuse of it."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _processes() -> dict[int, tuple[str, int, int]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            found[int(entry)] = stat
    return found


def _alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and _start_time(pid) == started


class Demo:
    """scripts/demo.sh in its own session, its output collected line by line, every process it started remembered."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.web_port = free_port()
        self.redis_port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
        env |= {
            "MESHBOARD_DEMO_STATE": str(state),
            "MESHBOARD_DEMO_PORT": str(self.web_port),
            "MESHBOARD_DEMO_REDIS_PORT": str(self.redis_port),
        }
        self.lines: list[str] = []
        self.seen: dict[int, int] = {}  # pid -> start time, of every descendant ever seen
        self.groups: set[int] = set()
        self.proc = subprocess.Popen(
            [str(ROOT / "scripts" / "demo.sh")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def wait_for_line(self, text: str, timeout: float) -> None:
        def seen() -> bool:
            assert self.proc.poll() is None or text in self.output, f"the demo ended:\n{self.output}"
            return text in self.output

        wait_for(seen, timeout, 0.2)

    def remember(self) -> dict[int, int]:
        """Every process now descending from the demo (and the process groups they are in); returns them."""
        procs = _processes()
        children: dict[int, list[int]] = {}
        for pid, (_state, ppid, _pgid) in procs.items():
            children.setdefault(ppid, []).append(pid)
        now, todo = {}, [self.proc.pid]
        while todo:
            pid = todo.pop()
            if (started := _start_time(pid)) is not None:
                now[pid] = started
                self.groups.add(procs[pid][2] if pid in procs else pid)
            todo += children.get(pid, [])
        self.seen |= now
        return now

    def left(self) -> list[str]:
        """What is still running of what the demo started: processes, and process groups with a member."""
        procs = _processes()
        alive = [f"pid {pid}" for pid, started in self.seen.items() if _alive(pid, started)]
        groups = [f"group {g}" for g in self.groups if any(s[2] == g and s[0] != "Z" for s in procs.values())]
        return alive + groups

    def children(self) -> dict:
        return json.loads((self.state / "demo.json").read_text())["children"]

    def lab(self) -> dict:
        return json.loads((self.state / "lab-mesh" / "lab.json").read_text())

    def get(self, url: str) -> dict:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    def kill_all(self) -> None:
        for group in self.groups | {self.proc.pid}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        for pid, started in self.seen.items():
            if _alive(pid, started):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def running_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    demo = Demo(tmp_path_factory.mktemp("demo"))
    try:
        started = time.monotonic()
        demo.wait_for_line("Meshboard demo is running", 180)
        print(f"demo up in {time.monotonic() - started:.1f} s")
        demo.remember()
        yield demo
    finally:
        if demo.proc.poll() is None:
            demo.kill_all()


def test_it_restarts_prometheus_and_says_so_once(running_demo: Demo):
    demo = running_demo
    lab = demo.lab()
    old = lab["pids"]["prometheus"]
    killed_at = time.time()

    os.kill(old, signal.SIGKILL)

    started = time.monotonic()
    new = wait_for(lambda: (pid := demo.lab()["pids"]["prometheus"]) != old and pid, 30, 0.2)
    with urllib.request.urlopen(f"{lab['prometheus_url']}/-/ready", timeout=5) as response:
        assert response.status == 200
    print(f"Prometheus back in {time.monotonic() - started:.1f} s")
    demo.wait_for_line(PROMETHEUS_BACK, 10)
    assert demo.count("prometheus exited") == 1, demo.output
    demo.remember()
    assert new in demo.seen

    # Metrics are collected again from the restarted Prometheus (the demo polls every 15 s).
    def collected_since_kill() -> bool:
        metrics = demo.get(f"http://127.0.0.1:{demo.web_port}/readyz")["clusters"][0]["metrics"]
        last = metrics["last_success"]
        return bool(last) and datetime.fromisoformat(last).timestamp() > killed_at + 1

    wait_for(collected_since_kill, 60, 1)
    print(f"metrics collected again {time.monotonic() - started:.1f} s after the kill")
    assert demo.count("prometheus exited") == 1, demo.output


def test_it_restarts_an_envoy_and_says_so_once(running_demo: Demo):
    demo = running_demo
    lab = demo.lab()
    old = lab["pids"]["envoy:bookstore-v2"]

    os.kill(old, signal.SIGKILL)

    started = time.monotonic()
    wait_for(lambda: demo.lab()["pids"]["envoy:bookstore-v2"] != old, 30, 0.2)
    admin = lab["sidecars"]["bookstore-v2"]["admin"]
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=5) as response:
        assert response.status == 200
    print(f"the Envoy of bookstore-v2 back in {time.monotonic() - started:.1f} s")
    demo.wait_for_line("demo: envoy bookstore-v2 exited (killed by SIGKILL); restarting in 1 s", 10)
    assert demo.count("envoy bookstore-v2 exited") == 1, demo.output
    demo.remember()


def test_it_restarts_the_cluster_worker_with_its_beat(running_demo: Demo):
    demo = running_demo
    old = demo.children()["the cluster worker"]
    old_group = [pid for pid, s in _processes().items() if s[2] == old["pgid"]]
    assert len(old_group) >= 2, "the worker and its embedded beat"

    os.kill(old["pid"], signal.SIGKILL)

    started = time.monotonic()
    new = wait_for(lambda: (c := demo.children()["the cluster worker"])["pid"] != old["pid"] and c, 20, 0.2)
    wait_for(lambda: not any(s[2] == old["pgid"] for s in _processes().values()), 10, 0.2)  # the old beat too
    wait_for(lambda: len([p for p, s in _processes().items() if s[2] == new["pgid"] and s[0] != "Z"]) >= 2, 60, 0.5)
    print(f"cluster worker and its beat back in {time.monotonic() - started:.1f} s")
    demo.wait_for_line(WORKER_BACK, 10)
    assert demo.count("the cluster worker exited") == 1, demo.output
    assert new["restarts"] == 1
    demo.remember()


def test_it_stops_every_process_group_on_ctrl_c(running_demo: Demo):
    demo = running_demo
    demo.remember()
    assert len(demo.seen) >= 14, "supervisor, redis, stand-in, lab, 6 Envoys, Prometheus, 2 workers, beat, web"

    started = time.monotonic()
    os.killpg(demo.proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the demo's foreground group
    demo.proc.wait(timeout=20)
    wait_for(lambda: not demo.left(), 15 - (time.monotonic() - started), 0.2)
    print(f"everything stopped {time.monotonic() - started:.1f} s after SIGINT")

    assert demo.proc.returncode == 0, demo.output
    assert "stopped unexpectedly" not in demo.output
    assert "did not stop within" not in demo.output, "every process stopped on SIGTERM"
    assert demo.lines[-1] == "demo: stopped"
    assert demo.count("prometheus exited") == 1 and demo.count("the cluster worker exited") == 1
    assert not (demo.state / "lab-mesh" / "lab.json").exists()


def test_it_stops_cleanly_when_the_stand_in_dies(tmp_path: Path):
    demo = Demo(tmp_path / "demo")
    try:
        demo.wait_for_line("Meshboard demo is running", 180)
        demo.remember()
        stand_in = demo.children()["the Kubernetes API stand-in"]["pid"]

        os.kill(stand_in, signal.SIGKILL)

        started = time.monotonic()
        demo.proc.wait(timeout=30)
        wait_for(lambda: not demo.left(), 15, 0.2)
        print(f"demo stopped {time.monotonic() - started:.1f} s after the stand-in died")
    finally:
        if demo.proc.poll() is None:
            demo.kill_all()
    assert demo.proc.returncode == 1
    assert (
        "demo: the Kubernetes API stand-in exited (killed by SIGKILL): its objects (and any weights you changed) "
        "lived only in its memory, so the demo cannot go on; stopping everything." in demo.output
    )
    assert "restarting" not in demo.output
    assert "stopped unexpectedly" not in demo.output
    assert demo.lines[-1] == "demo: stopped"
