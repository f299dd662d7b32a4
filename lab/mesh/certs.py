"""The lab CA and the sidecars' certificates, with OSM's identities (`<sa>.<ns>.cluster.local`, reference osm.md §3.3).

OSM's Tresor CA issues each sidecar a certificate whose CN and DNS SAN are `<serviceaccount>.<namespace>.<trust
domain>`; Envoy's RBAC `principal_name` then matches that DNS SAN. The CA itself is the lab's one
(`lab.kubeapi.tls.CertificateAuthority`): keys are EC P-256, written 0600 (Envoy runs as the same user as the lab).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from lab.kubeapi.tls import CertificateAuthority

TRUST_DOMAIN = "cluster.local"
CA_NAME = "osm-ca.openservicemesh.io"


def identity(service_account: str, namespace: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """OSM's service identity as it appears in a certificate: `<sa>.<ns>.<trust domain>`."""
    return f"{service_account}.{namespace}.{trust_domain}"


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


class LabCA:
    """`LabCA(folder)` makes a self-signed CA there; `issue(identity)` writes `<identity>.crt/.key` beside it."""

    def __init__(self, folder: Path, *, validity: dt.timedelta = dt.timedelta(days=1)) -> None:
        self.folder = Path(folder)
        self.validity = validity
        self.ca = CertificateAuthority(CA_NAME)
        self.cert_path = self.ca.write(self.folder / "ca.crt")

    def issue(self, ident: str) -> CertFiles:
        """A leaf for a sidecar (server and client auth), CN and DNS SAN = `ident`."""
        pair = self.ca.issue(ident, organizations=("Open Service Mesh",), names=(ident,), validity=self.validity)
        return CertFiles(*pair.write(self.folder / f"{ident}.crt", self.folder / f"{ident}.key"))
