"""A small process supervisor, and `make demo` built on it (scripts/demo.sh sets the environment and execs
`python -m lab.supervise demo`).

Every child runs in its own session, hence its own process group, so a terminal's Ctrl-C reaches only the supervisor,
and stopping a child stops what it started in its group too (the beat process inside the cluster worker). A child
that exits is restarted after a backoff (1 s, 2 s, 4 s ... capped at 30 s; back to 1 s once it has run for a minute),
with one line each time: "demo: prometheus exited (killed by SIGKILL); restarting in 1 s". A child whose loss cannot
be repaired (the Kubernetes API stand-in: its objects live in its memory) is fatal: the supervisor says why and stops
everything. SIGINT, SIGTERM or SIGHUP stop every group: SIGTERM, then SIGKILL for what is still there a few seconds
later; a second Ctrl-C skips the wait. Should the supervisor itself be killed outright, each child gets SIGTERM from
the kernel (PR_SET_PDEATHSIG), so nothing is left running.

Prometheus and the Envoys are children of `python -m lab.mesh up`, which restarts them itself (lab/mesh/lab.py,
`supervise=True`) and prints "lab mesh: <what> ..." lines; the supervisor passes those on as "demo: <what> ...".
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0
STABLE_AFTER = 60.0  # a child that ran this long restarts after BACKOFF_FIRST again
STOP_GRACE = 6.0  # seconds between SIGTERM and SIGKILL, per stop phase
LAB_PREFIX = "lab mesh: "  # lines of `lab.mesh up` passed on to the terminal


try:  # resolved once here: a child calls it between fork and exec, where loading a library could deadlock
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_supervisor() -> None:
    """In the child: SIGTERM when the supervisor dies, even by SIGKILL (a safety net, not the stop path)."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Backoff:
    """Delays before restarting one child: 1 s, 2 s, 4 s ... capped at 30 s; from 1 s again after a long run."""

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP, stable_after: float = STABLE_AFTER):
        self.first, self.cap, self.stable_after = first, cap, stable_after
        self.failures = 0

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.stable_after:
            self.failures = 0
        self.failures += 1
        return min(self.cap, self.first * 2 ** (self.failures - 1))


def describe_exit(returncode: int | None) -> str:
    """`code 1`, `killed by SIGKILL`, or `did not start`."""
    if returncode is None:
        return "did not start"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"code {returncode}"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now. Binds as servers do (SO_REUSEADDR, like runserver and Redis), so
    sockets in TIME-WAIT left by a server that just stopped do not count as busy; a listening socket does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Child:
    """One supervised process: `argv` with its output in `log` (or passed through `pump` line by line)."""

    name: str
    argv: list[str]
    log: Path
    fatal: str = ""  # not empty: this child's exit stops the whole demo; the sentence says why
    stop_phase: int = 0  # higher phases stop first
    pump: Callable[[str], None] | None = None  # reads the child's output itself; called with each line
    before_restart: Callable[[], None] | None = None
    after_restart: Callable[[Child], None] | None = None
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    restarts: int = 0
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def pgid(self) -> int | None:
        return self.proc.pid if self.proc else None  # each child leads its own session and group


class Stopped(Exception):
    """Stopping was asked for (a signal), or a fatal child exited."""


class Supervisor:
    def __init__(self, state_file: Path | None = None, say: Callable[[str], None] | None = None) -> None:
        self.children: list[Child] = []
        self.state_file = state_file
        self._say = say or (lambda line: print(line, flush=True))
        self._lock = threading.Lock()
        self.stop_requested = threading.Event()
        self.hurry = threading.Event()
        self.exit_code = 0
        self.cleanups: list[Callable[[], None]] = []  # run once every group is gone

    def say(self, line: str) -> None:
        with self._lock:
            self._say(line)

    # ---- signals -----------------------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            if self.stop_requested.is_set():
                self.hurry.set()
            self.stop_requested.set()

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, handler)

    # ---- children ----------------------------------------------------------------------------------------------
    def start(self, child: Child) -> Child:
        if child not in self.children:
            self.children.append(child)
        child.log.parent.mkdir(parents=True, exist_ok=True)
        if child.pump is not None:
            child.proc = subprocess.Popen(
                child.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_supervisor,  # prctl resolved before fork: one libc call after it
            )
            threading.Thread(target=self._pump, args=(child, child.proc), daemon=True).start()
        else:
            with child.log.open("ab") as log:
                child.proc = subprocess.Popen(
                    child.argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=_die_with_supervisor,  # prctl resolved before fork: one libc call after it
                )
        child.started_at = time.monotonic()
        self.write_state()
        return child

    def _pump(self, child: Child, proc: subprocess.Popen) -> None:
        with child.log.open("ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                with contextlib.suppress(Exception):
                    child.pump(raw.decode(errors="replace").rstrip("\n"))
        proc.stdout.close()

    def write_state(self) -> None:
        """`demo.json`: the supervisor's pid and each child's pid, process group and restarts (for people and tests)."""
        if self.state_file is None:
            return
        state = {
            "pid": os.getpid(),
            "children": {
                c.name: {
                    "pid": c.proc.pid if c.proc else None,
                    "pgid": c.pgid,
                    "restarts": c.restarts,
                    "log": str(c.log),
                }
                for c in self.children
            },
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def run_once(self, argv: list[str], what: str, log: Path, timeout: float = 300.0) -> None:
        """Run a one-shot command in its own group (Ctrl-C stops it through the supervisor); Stopped on failure."""
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if self.stop_requested.wait(0.1) or time.monotonic() > deadline:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
                raise Stopped(what)
        if proc.returncode != 0:
            self.say(f"demo: {what} failed ({describe_exit(proc.returncode)}); the end of {log}:\n{tail(log, 10)}")
            self.exit_code = 1
            raise Stopped(what)

    def wait_for(self, predicate: Callable[[], object], timeout: float, child: Child | None = None) -> bool:
        """Poll `predicate` until true; False when `timeout` passes or `child` exits. Stopped when stopping is asked."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stop_requested.is_set():
                raise Stopped("asked to stop")
            with contextlib.suppress(Exception):
                if predicate():
                    return True
            if child is not None and child.proc is not None and child.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    # ---- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Watch the children until a signal or a fatal exit; then stop everything. The exit code."""
        try:
            while not self.stop_requested.wait(0.25):
                for child in list(self.children):
                    self._check(child)
        except Stopped:
            pass
        return self.stop_all()

    def _check(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                self._restart(child)
            return
        if child.proc is None or child.proc.poll() is None:
            return
        code = child.proc.returncode
        signal_group(child.pgid, signal.SIGKILL)  # what the child left behind in its group (beat, for a worker)
        if child.fatal:
            self.say(f"demo: {child.name} exited ({describe_exit(code)}): {child.fatal}")
            last = tail(child.log)
            if last:
                self.say(f"demo: the end of {child.log}:\n{last}")
            self.exit_code = 1
            raise Stopped(child.name)
        delay = child.backoff.next_delay(now - child.started_at)
        self.say(f"demo: {child.name} exited ({describe_exit(code)}); restarting in {delay:g} s")
        child.restart_at = now + delay

    def _restart(self, child: Child) -> None:
        child.restart_at = None
        child.restarts += 1
        try:
            if child.before_restart is not None:
                child.before_restart()
            self.start(child)
            if child.after_restart is not None:
                child.after_restart(child)
        except Stopped:
            raise
        except Exception as err:  # a restart that goes wrong is reported, and retried when the child exits
            self.say(f"demo: restarting {child.name}: {err.__class__.__name__}: {err}")

    def stop_all(self) -> int:
        """SIGTERM each group, phase by phase (higher `stop_phase` first); SIGKILL what is left after STOP_GRACE s."""
        by_signal = self.stop_requested.is_set() and not self.exit_code
        self.stop_requested.set()
        self.say(("\n" if by_signal else "") + "demo: stopping")
        for phase in sorted({c.stop_phase for c in self.children}, reverse=True):
            members = [c for c in self.children if c.stop_phase == phase and c.proc is not None]
            for c in members:
                signal_group(c.pgid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            while time.monotonic() < deadline and not self.hurry.is_set():
                for c in members:
                    c.proc.poll()  # reap the leader, so its group counts as gone once every member is
                if not any(group_alive(c.pgid) for c in members):
                    break
                time.sleep(0.1)
            for c in members:
                if group_alive(c.pgid):
                    if not self.hurry.is_set():
                        self.say(f"demo: {c.name} did not stop within {STOP_GRACE:g} s; killing it")
                    signal_group(c.pgid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.proc.wait(timeout=5)
        for cleanup in self.cleanups:
            try:
                cleanup()
            except Exception as err:
                self.say(f"demo: cleaning up: {err.__class__.__name__}: {err}")
        self.say("demo: stopped")
        return self.exit_code


# ---- make demo ---------------------------------------------------------------------------------------------------
def argv(template: str, **values: object) -> list[str]:
    """`template` split at spaces; a word `{name}` becomes `str(values[name])` whole (spaces in paths and all)."""
    return [str(values[w[1:-1]]) if w[:1] == "{" and w[-1:] == "}" else w for w in template.split()]


def _url_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own local server
        return response.status == 200


def _shown(path: Path) -> str:
    """A path as the person who ran `make demo` can use it: relative to the repository when it is inside."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def demo() -> int:
    """`make demo`, from the environment scripts/demo.sh prepares (MESHBOARD_DEMO_STATE, MESHBOARD_DEMO_PORT, ...)."""
    state = Path(os.environ.get("MESHBOARD_DEMO_STATE", "var/demo")).resolve()
    web_port = int(os.environ.get("MESHBOARD_DEMO_PORT", "8000"))
    redis_port = int(os.environ.get("MESHBOARD_DEMO_REDIS_PORT", "6390"))
    fault_control = os.environ.get("MESHBOARD_DEMO_FAULT_CONTROL", "0") == "1"
    state.mkdir(parents=True, exist_ok=True)
    for what, port, variable in (
        ("web", web_port, "MESHBOARD_DEMO_PORT"),
        ("redis", redis_port, "MESHBOARD_DEMO_REDIS_PORT"),
    ):
        if not port_free(port):
            print(f"demo: port {port} ({what}) is in use; pick another with {variable}=<port> make demo", flush=True)
            return 1

    py = sys.executable
    bin_dir = Path(py).parent
    celery = str(bin_dir / "celery") if (bin_dir / "celery").exists() else "celery"
    lab_dir = state / "lab-mesh"
    kubeconfig = state / "kubeconfig"
    sup = Supervisor(state / "demo.json")
    sup.install_signal_handlers()
    sup.cleanups.append(lambda: lab_leftovers())
    shown = _shown(state)
    registered = {"prometheus_url": ""}

    def lab_state() -> dict:
        return json.loads((lab_dir / "lab.json").read_text())

    def register_cluster(prometheus_url: str) -> None:
        sup.run_once(
            argv(
                "{py} manage.py add_cluster demo --poll-interval 15 --kubeconfig {kubeconfig} --prometheus-url {url}",
                py=py,
                kubeconfig=kubeconfig,
                url=prometheus_url,
            ),
            "registering the demo cluster",
            state / "setup.log",
        )
        registered["prometheus_url"] = prometheus_url

    def lab_leftovers() -> None:
        """A lab mesh that died leaves its Prometheus running and its Envoys' shared memory: clear them (lab.json)."""
        from lab.mesh.__main__ import down

        with contextlib.redirect_stdout(None):
            down(lab_dir)

    def lab_back(child: Child) -> None:
        if not sup.wait_for(lambda: (lab_dir / "lab.json").stat().st_size > 0, 90, child):
            return  # it exited again: the loop restarts it
        url = lab_state()["prometheus_url"]
        if url != registered["prometheus_url"]:
            register_cluster(url)
            sup.say(f"demo: the lab mesh is back; its Prometheus is now {url}")

    def lab_line(line: str) -> None:
        if line.startswith(LAB_PREFIX):
            sup.say("demo: " + line[len(LAB_PREFIX) :])

    try:
        sup.start(
            Child(
                "redis",
                argv(
                    "redis-server --port {port} --bind 127.0.0.1 --save {nothing} --appendonly no --dir {dir}",
                    port=redis_port,
                    nothing="",
                    dir=state,
                ),
                state / "redis.log",
            )
        )
        kubeconfig.unlink(missing_ok=True)
        # MESHBOARD_DEMO_FAULT_CONTROL=1 lets you stall or fail the stand-in's answers over HTTP (lab/kubeapi/README).
        kubeapi = sup.start(
            Child(
                "the Kubernetes API stand-in",
                argv(
                    "{py} -m lab.kubeapi --seed bookstore --port 0 --kubeconfig-out {kubeconfig}",
                    py=py,
                    kubeconfig=kubeconfig,
                )
                + (["--fault-control"] if fault_control else []),
                state / "kubeapi.log",
                fatal="its objects (and any weights you changed) lived only in its memory, so the demo cannot go on; "
                "stopping everything. Run make demo again.",
            )
        )
        if not sup.wait_for(lambda: kubeconfig.stat().st_size > 0, 20, kubeapi):
            sup.say(f"demo: the Kubernetes API stand-in did not start; see {shown}/kubeapi.log")
            sup.exit_code = 1
            raise Stopped("kubeapi")
        if fault_control:
            server = next(
                line.split("server:", 1)[1].strip() for line in kubeconfig.read_text().splitlines() if "server:" in line
            )
            sup.say(f"demo: fault control on: POST faults to {server}/_lab/faults")

        # The lab mesh: one Envoy per bookstore pod, its apps and traffic, the controller that applies the stand-in's
        # TrafficSplits and policies, and Prometheus (ports chosen at run time; see lab-mesh/lab.json). It restarts
        # a Prometheus or an Envoy that dies; the supervisor restarts the lab itself.
        (lab_dir / "lab.json").unlink(missing_ok=True)
        lab = sup.start(
            Child(
                "the lab mesh",
                argv(
                    "{py} -m lab.mesh up --supervise --kubeconfig {kubeconfig} --state-dir {dir}",
                    py=py,
                    kubeconfig=kubeconfig,
                    dir=lab_dir,
                ),
                state / "lab-mesh.log",
                stop_phase=1,
                pump=lab_line,
                before_restart=lab_leftovers,
                after_restart=lab_back,
            )
        )
        if not sup.wait_for(lambda: (lab_dir / "lab.json").stat().st_size > 0, 90, lab):
            sup.say(f"demo: the lab mesh did not start; the end of {shown}/lab-mesh.log:\n{tail(lab.log, 10)}")
            sup.exit_code = 1
            raise Stopped("lab")
        prometheus_url = lab_state()["prometheus_url"]

        setup = state / "setup.log"
        sup.run_once([py, "manage.py", "migrate", "--noinput"], "migrating the database", setup)
        sup.run_once(
            [py, "manage.py", "create_user", "viewer", "--role", "viewer", "--password", "view-the-mesh"],
            "creating the viewer",
            setup,
        )
        sup.run_once(
            argv("{py} manage.py create_user operator --role operator --password move-the-canary --staff", py=py),
            "creating the operator",
            setup,
        )
        register_cluster(prometheus_url)

        # Both collection queues, one small solo worker each (so a stalled Prometheus never holds Kubernetes data
        # back, as in production); beat runs inside the cluster-data worker to keep the demo light. Both also take
        # the tick queue.
        sup.start(
            Child(
                "the cluster worker",
                argv(
                    "{celery} -A meshboard worker -Q cluster,tick -n cluster@%h --beat --pool solo --loglevel WARNING"
                    " --schedule {schedule}",
                    celery=celery,
                    schedule=state / "celerybeat-schedule",
                ),
                state / "worker-cluster.log",
                stop_phase=2,
            )
        )
        sup.start(
            Child(
                "the metrics worker",
                argv(
                    "{celery} -A meshboard worker -Q metrics,tick -n metrics@%h --pool solo --loglevel WARNING",
                    celery=celery,
                ),
                state / "worker-metrics.log",
                stop_phase=2,
            )
        )
        web = sup.start(
            Child(
                "the web server",
                [py, "manage.py", "runserver", f"127.0.0.1:{web_port}", "--noreload"],
                state / "web.log",
                stop_phase=2,
            )
        )
        if not sup.wait_for(lambda: _url_ok(f"http://127.0.0.1:{web_port}/healthz"), 60, web):
            sup.say(f"demo: the web server did not answer; the end of {shown}/web.log:\n{tail(web.log, 10)}")
            sup.exit_code = 1
            raise Stopped("web")
    except Stopped:
        return sup.stop_all()

    sup.say(
        f"""
Meshboard demo is running: http://127.0.0.1:{web_port}/
  log in as  operator / move-the-canary   (may change TrafficSplit weights; also opens /admin/)
         or  viewer   / view-the-mesh     (read only)
  cluster "demo" is the Kubernetes API stand-in seeded with OSM's bookstore demo, collected every 15 s,
  with real Envoy sidecars carrying its traffic; their Prometheus: {prometheus_url}
  make the canary worse:  {_shown(Path(py))} -m lab.mesh set --state-dir {shown}/lab-mesh --workload bookstore-v2 \
--error-rate 0.3
  workers: one per queue (cluster, metrics), beat inside the cluster one; readiness: http://127.0.0.1:{web_port}/readyz
  a process that dies is restarted (the stand-in's loss stops the demo); pids: {shown}/demo.json
  logs: {shown}/*.log     stop: Ctrl-C"""
    )
    return sup.run()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["demo"]:
        return demo()
    print("usage: python -m lab.supervise demo   (scripts/demo.sh sets its environment)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
