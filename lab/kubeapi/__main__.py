"""`python -m lab.kubeapi --seed bookstore|istio-bookstore|synthetic|PATH.yaml [--fault-control]`: serve a seeded
stand-in until SIGTERM/SIGINT. With --fault-control, faults can be added over HTTP on /_lab/faults (see
lab/kubeapi/README.md).

Like a real cluster: `--tls` serves HTTPS with a CA of its own (the kubeconfig carries it), `--token-file` and
`--client-certificates` make it refuse requests without a valid credential (401), `--rbac` makes it refuse what the
identity's Roles and ClusterRoles do not allow (403), e.g.
`--tls --token-file tokens.csv --rbac deploy/kubernetes/rbac/cluster/rbac.yaml`. Without them: plain HTTP, any
request accepted."""

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

from .auth import parse_token_file
from .server import KubeAPIServer, SeedError

FAULT_CONTROL_ENV = "KUBEAPI_FAULT_CONTROL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab.kubeapi", description=__doc__)
    parser.add_argument(
        "--seed", required=True, help="bookstore, istio-bookstore, synthetic, or a multi-document YAML file"
    )
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
    secure = parser.add_argument_group("a real cluster's security (all off by default)")
    secure.add_argument("--tls", action="store_true", help="serve HTTPS with a CA of the stand-in's own")
    secure.add_argument(
        "--tls-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a name (DNS or IP) the serving certificate is valid for (repeatable; default 127.0.0.1 and localhost)",
    )
    secure.add_argument("--ca-out", type=Path, default=None, help="also write the CA certificate (PEM) here")
    secure.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help='accepted bearer tokens, in kube-apiserver\'s --token-auth-file format: token,user,uid,"group1,group2"; '
        "the kubeconfig carries the first",
    )
    secure.add_argument(
        "--client-certificates",
        action="store_true",
        help="accept client certificates signed by the stand-in's CA (CN user, O groups; needs --tls)",
    )
    secure.add_argument(
        "--kubeconfig-client-cert",
        metavar="USER[:GROUP,...]",
        default=None,
        help="write a kubeconfig whose credential is a client certificate for this user and groups",
    )
    secure.add_argument(
        "--rbac",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="YAML file or folder of Roles, ClusterRoles and bindings to authorize requests with (repeatable; "
        "needs --token-file or --client-certificates)",
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
    security: dict = {}
    if args.tls:
        security["tls"] = True
        if args.tls_name:
            security["tls_names"] = tuple(args.tls_name)
    if args.token_file is not None:
        security["tokens"] = parse_token_file(args.token_file)
    if args.client_certificates:
        security["client_certificates"] = True
    if args.rbac:
        security["rbac"] = args.rbac
    try:
        server = KubeAPIServer(seed, host=args.host, port=args.port, fault_control=args.fault_control, **security)
    except (SeedError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    server.start()
    kubeconfig = args.kubeconfig_out or Path(tempfile.gettempdir()) / f"kubeapi-{server.port}.kubeconfig"
    user = None
    if args.kubeconfig_client_cert:
        if server.ca is None:
            print("error: --kubeconfig-client-cert needs --tls", file=sys.stderr)
            server.stop()
            return 1
        name, _, groups = args.kubeconfig_client_cert.partition(":")
        user = server.client_certificate_user(name, [g for g in groups.split(",") if g])
    server.write_kubeconfig(kubeconfig, user=user)
    if args.ca_out is not None and server.ca is not None:
        server.ca.write(args.ca_out)
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
