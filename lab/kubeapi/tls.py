"""The stand-in's own certificate authority: a self-signed CA, a serving certificate for the names clients dial,
and client certificates whose subject carries a Kubernetes identity (CN = user, O = groups), as kube-apiserver's
x509 authenticator reads them. Keys are EC P-256; files are written 0600.

Also the lab's one CA for everything else: tests put TLS in front of other lab servers with it (Prometheus with
--web.config.file), and the lab mesh's sidecar certificates come from it (lab/mesh/certs.py, `issue`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, cert_path: Path, key_path: Path) -> tuple[Path, Path]:
        cert_path, key_path = Path(cert_path), Path(key_path)
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(self.cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key_pem)
        return cert_path, key_path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class CertificateAuthority:
    """`CertificateAuthority("kubeapi-ca")`: a fresh self-signed CA in memory; `issue_server(names)`,
    `issue_client(user, groups)` and `issue(common_name, ...)` give leaf certificates it signs."""

    def __init__(self, common_name: str = "kube-standin-ca") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def _leaf(
        self,
        subject: x509.Name,
        usages: list[x509.ObjectIdentifier] | tuple[x509.ObjectIdentifier, ...],
        names: tuple[str, ...] = (),
        *,
        not_before: dt.datetime | None = None,
        validity: dt.timedelta = dt.timedelta(days=1),
    ) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def issue(
        self,
        common_name: str,
        *,
        organizations: tuple[str, ...] | list[str] = (),
        names: tuple[str, ...] | list[str] = (),
        usages: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        not_before: dt.datetime | None = None,
        validity: dt.timedelta = dt.timedelta(days=1),
    ) -> KeyPair:
        """Any leaf: subject CN = `common_name` (and one O per organization), SANs `names`, extended key usages
        `usages` (server and client auth unless told)."""
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        return self._leaf(x509.Name(attributes), usages, tuple(names), not_before=not_before, validity=validity)

    def issue_server(self, names: tuple[str, ...] | list[str] = DEFAULT_SERVER_NAMES) -> KeyPair:
        """A serving certificate valid for `names` (IP addresses and DNS names, as SANs)."""
        names = tuple(names)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "kube-standin")])
        return self._leaf(subject, [ExtendedKeyUsageOID.SERVER_AUTH], names, validity=dt.timedelta(days=365))

    def issue_client(
        self,
        user: str,
        groups: tuple[str, ...] | list[str] = (),
        *,
        not_before: dt.datetime | None = None,
        validity: dt.timedelta = dt.timedelta(days=1),
    ) -> KeyPair:
        """A client certificate for a Kubernetes identity: CN = the user name, one O per group."""
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        return self._leaf(
            x509.Name(attributes), [ExtendedKeyUsageOID.CLIENT_AUTH], not_before=not_before, validity=validity
        )

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.cert_pem)
        return path


def server_context(cert_path: Path, key_path: Path, client_ca_path: Path | None = None) -> ssl.SSLContext:
    """A TLS server context; with `client_ca_path`, clients may present a certificate, which must be signed by
    that CA (Python's ssl cannot ask for a certificate without verifying it: one from another CA fails the
    handshake, where kube-apiserver would finish it and answer 401)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    if client_ca_path is not None:
        context.load_verify_locations(cafile=str(client_ca_path))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def subject_identity(peer_cert: dict) -> tuple[str, tuple[str, ...]]:
    """(CN, O values) from `SSLSocket.getpeercert()`'s parsed subject."""
    user, groups = "", []
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return user, tuple(groups)
