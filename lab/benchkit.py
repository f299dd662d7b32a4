"""What every benchmark (`lab.bench`, `lab.bench_graph`, `lab.bench_metrics`) shares: the machine line, the stand-in
in its own process, timing and its Markdown line, Django on a throwaway database, and users with a role."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores, {cpu or 'unknown CPU'}, Python {platform.python_version()}"


@contextmanager
def standin(services: int, workdir: Path, seed: str = "synthetic") -> Iterator[Path]:
    """The stand-in in its own process, as a real API server is: its serialising does not share our GIL."""
    kubeconfig = workdir / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.kubeapi",
            "--seed",
            seed,
            "--services",
            str(services),
            "--port",
            "0",
            "--kubeconfig-out",
            str(kubeconfig),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (kubeconfig.exists() and kubeconfig.stat().st_size):
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("the stand-in did not start")
            time.sleep(0.1)
        yield kubeconfig
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a large seed takes a while to let go of; never leave it running
            proc.kill()
            proc.wait()


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def fmt(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})"


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def setup_django(tmp: str) -> None:
    """Django with its data (SQLite) in the folder `tmp`, migrated."""
    os.environ.update(DEBUG="1", MESHBOARD_VAR_DIR=tmp, DJANGO_SETTINGS_MODULE="meshboard.settings")
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def user(username: str, role: str) -> Any:
    """A user holding Meshboard's `role` (viewer or operator), with no password."""
    from django.contrib.auth import get_user_model

    from apps.clusters.roles import ensure_roles

    account = get_user_model().objects.create_user(username, password=None)
    account.groups.set([ensure_roles()[role]])
    return account
