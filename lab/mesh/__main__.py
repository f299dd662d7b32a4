"""`python -m lab.mesh`: start, inspect, steer and stop the lab mesh.

up      run the lab in the foreground until Ctrl-C/SIGTERM (with --kubeconfig: against that stand-in or cluster;
        without: starts its own stand-in seeded with --seed, default bookstore); writes <state-dir>/lab.json;
        with --supervise it restarts a Prometheus or an Envoy that exits (backoff 1 s, 2 s, 4 s ... 30 s) and prints
        one line each time ("lab mesh: prometheus exited (killed by SIGKILL); restarting in 1 s")
status  print the running lab's ports, pids, behaviours and generator counts
set     change a server's behaviour, e.g. `set --workload bookstore-v2 --error-rate 0.2 --latency-ms 50,120`
prometheus-mode byo|osm
down    stop a lab by the pids in <state-dir>/lab.json (for a lab whose `up` was killed without cleanup)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

DEFAULT_STATE = Path("var/lab-mesh")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.mesh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the lab until Ctrl-C")
    up.add_argument("--kubeconfig", type=Path, default=None, help="the stand-in to read (default: start one)")
    up.add_argument("--seed", default="bookstore", help="seed of the stand-in started when --kubeconfig is absent")
    up.add_argument("--prometheus-mode", choices=("byo", "osm"), default="byo")
    up.add_argument("--scrape-interval", default="1s")
    up.add_argument("--rate-scale", type=float, default=1.0, help="multiplies every client's request rate")
    up.add_argument("--duration", type=float, default=8 * 3600, help="seconds the clients send traffic for")
    up.add_argument("--control-port", type=int, default=0)
    up.add_argument("--supervise", action="store_true", help="restart a Prometheus or an Envoy that exits")
    for name in ("up", "status", "set", "prometheus-mode", "measure", "down"):
        p = up if name == "up" else sub.add_parser(name)
        p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="lab working folder (default %(default)s)")
    s = sub.choices["set"]
    s.add_argument("--workload", required=True, help="an HTTP server workload, e.g. bookstore-v2")
    s.add_argument("--error-rate", type=float, default=None, help="share of HTTP 500 answers, 0..1")
    s.add_argument("--latency-ms", default=None, help="LO,HI (uniform) or one value")
    sub.choices["prometheus-mode"].add_argument("mode", choices=("byo", "osm"))
    sub.choices["measure"].add_argument("--seconds", type=float, default=60.0)
    return parser


def _up(args: argparse.Namespace) -> int:
    from lab.mesh.lab import LabMesh

    state_dir = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    kubeapi = None
    kubeconfig = args.kubeconfig
    if kubeconfig is None:
        from lab.kubeapi import KubeAPIServer
        from lab.seeds.loader import load_seed

        kubeapi = KubeAPIServer(load_seed(args.seed)).start()
        kubeconfig = kubeapi.write_kubeconfig(state_dir / "kubeconfig")
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    lab = LabMesh(
        kubeconfig,
        state_dir,
        prometheus_mode=args.prometheus_mode,
        scrape_interval=args.scrape_interval,
        rate_scale=args.rate_scale,
        duration=args.duration,
        control_port=args.control_port,
        supervise=args.supervise,
    )
    try:
        lab.start()
        status = lab.status()
        print(f"lab mesh up: {len(lab.sidecars)} sidecars, Prometheus {lab.prometheus_url} ({lab.prometheus_mode})")
        if kubeapi is not None:
            print(f"kubeconfig: {kubeconfig}")
        print(f"state: {state_dir / 'lab.json'}   control: {status['control_url']}", flush=True)
        while not stopped.wait(0.5):
            pass
    finally:
        lab.stop()
        if kubeapi is not None:
            kubeapi.stop()
    print("lab mesh stopped", flush=True)
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def down(state_dir: Path) -> int:
    """Stop a lab by the pids in `<state_dir>/lab.json` (its `up`, then any Envoy or Prometheus left), remove the
    Envoys' shared memory and lab.json. For a lab whose `up` died without cleaning up."""
    path = state_dir / "lab.json"
    if not path.exists():
        print(f"no lab is running from {state_dir}")
        return 0
    state = json.loads(path.read_text())
    owner = int(state.get("pid") or 0)
    if owner and owner != os.getpid() and _alive(owner) and "lab.mesh" in _cmdline(owner):
        os.kill(owner, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(owner) and time.monotonic() < deadline:
            time.sleep(0.1)
    for name, pid in (state.get("pids") or {}).items():
        binary = "envoy" if name.startswith("envoy") else "prometheus"
        if _alive(pid) and binary in _cmdline(pid):
            os.kill(pid, signal.SIGTERM)
            print(f"stopped {name} (pid {pid})")
    for sidecar in [*(state.get("sidecars") or {}).values(), *(state.get("ingress") or {}).values()]:
        with contextlib.suppress(FileNotFoundError, TypeError):
            Path(f"/dev/shm/envoy_shared_memory_{int(sidecar['base_id']) * 10}").unlink()  # noqa: S108
    path.unlink(missing_ok=True)
    print("lab mesh down")
    return 0


def _proc_sample(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, RSS KiB, PSS KiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return cpu, rss, pss


def _measure(state_dir: Path, seconds: float) -> int:
    state = json.loads((state_dir / "lab.json").read_text())
    procs = {"lab (apps, clients, controller, stand-in when started by up)": state["pid"], **state["pids"]}
    before = {name: _proc_sample(pid) for name, pid in procs.items()}
    time.sleep(seconds)
    rows = {}
    for name, pid in procs.items():
        cpu, rss, pss = _proc_sample(pid)
        rows[name] = {
            "cpu_percent": round(100 * (cpu - before[name][0]) / seconds, 1),
            "rss_mib": round(rss / 1024, 1),
            "pss_mib": round(pss / 1024, 1),
        }
    total = {k: round(sum(r[k] for r in rows.values()), 1) for k in ("cpu_percent", "rss_mib", "pss_mib")}
    print(json.dumps({"seconds": seconds, "processes": rows, "total": total}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        return _up(args)
    if args.command == "down":
        return down(args.state_dir)
    if args.command == "measure":
        return _measure(args.state_dir, args.seconds)
    from lab.mesh.lab import control

    if not (args.state_dir / "lab.json").exists():
        print(f"no lab is running from {args.state_dir}", file=sys.stderr)
        return 1
    if args.command == "status":
        print(json.dumps(control(args.state_dir, "GET", "/status"), indent=2, sort_keys=True))
    elif args.command == "set":
        query = [f"workload={args.workload}"]
        if args.error_rate is not None:
            query.append(f"error_rate={args.error_rate}")
        if args.latency_ms is not None:
            query.append(f"latency_ms={args.latency_ms}")
        print(json.dumps(control(args.state_dir, "POST", "/behaviour?" + "&".join(query))))
    elif args.command == "prometheus-mode":
        print(json.dumps(control(args.state_dir, "POST", f"/prometheus-mode?mode={args.mode}")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
