"""`python -m lab.kubeapi --seed bookstore|synthetic|PATH.yaml [--fault-control]`: serve a seeded stand-in until
SIGTERM/SIGINT. With --fault-control, faults can be added over HTTP on /_lab/faults (see lab/kubeapi/README.md)."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from .server import KubeAPIServer, SeedError

FAULT_CONTROL_ENV = "KUBEAPI_FAULT_CONTROL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab.kubeapi", description=__doc__)
    parser.add_argument("--seed", required=True, help="bookstore, synthetic, or a multi-document YAML file")
    parser.add_argument("--services", type=int, default=None, help="number of services (synthetic seed)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--kubeconfig-out", type=Path, default=None, help="where to write the kubeconfig")
    parser.add_argument(
        "--fault-control",
        action="store_true",
        default=os.environ.get(FAULT_CONTROL_ENV, "").lower() in ("1", "true", "yes"),
        help="serve POST/GET/DELETE /_lab/faults to inject delays, error statuses and dropped connections "
        f"(also turned on by {FAULT_CONTROL_ENV}=1, e.g. `{FAULT_CONTROL_ENV}=1 make demo`)",
    )
    parser.add_argument(
        "--no-crd", action="append", default=[], metavar="GROUP", help="simulate a cluster without this CRD group"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        loader = importlib.import_module("lab.seeds.loader")
    except ModuleNotFoundError:
        print("lab.seeds.loader is not there yet; seeds cannot be loaded from the command line", file=sys.stderr)
        return 2
    options = {"services": args.services} if args.services is not None else {}
    seed = loader.load_seed(args.seed, **options)
    if args.no_crd:
        seed = replace(seed, crd_groups=seed.crd_groups - frozenset(args.no_crd))
    try:
        server = KubeAPIServer(seed, host=args.host, port=args.port, fault_control=args.fault_control)
    except SeedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    server.start()
    kubeconfig = args.kubeconfig_out or Path(tempfile.gettempdir()) / f"kubeapi-{server.port}.kubeconfig"
    server.write_kubeconfig(kubeconfig)
    print(f"serving {seed.name} at {server.url}", flush=True)
    print(f"kubeconfig: {kubeconfig}", flush=True)
    if server.fault_control_url:
        print(f"fault control: {server.fault_control_url}", flush=True)

    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(0.5):  # a timed wait lets the signal handler run promptly
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
