"""Authentication for the stand-in, as kube-apiserver does it with static tokens and x509 client certificates.

Off by default (the stand-in then accepts any request, with or without a token). Turned on by giving the server a
token list and/or client certificates (`KubeAPIServer(..., tokens={...}, client_certificates=True)`, or
`--token-file` / `--client-certificates` on the command line). Then each request needs:

- `Authorization: Bearer <token>` with a token in the list (the list can change at run time: `set_token`,
  `remove_token`; a token may carry an expiry, after which it is refused), or
- a client certificate signed by the server's CA (TLS only): CN is the user, each O a group.

A request with neither, or with a token not in the list or expired, gets 401 with the apiserver's Unauthorized
Status. An authenticated identity is in the group `system:authenticated`; a service account
(`system:serviceaccount:<ns>:<name>`) is also in `system:serviceaccounts` and `system:serviceaccounts:<ns>`.

The token file is kube-apiserver's `--token-auth-file` format: CSV lines `token,user,uid,"group1,group2"`.
"""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

AUTHENTICATED = "system:authenticated"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()

    def all_groups(self) -> tuple[str, ...]:
        """The groups the API server adds: system:authenticated, and a service account's own."""
        extra = [AUTHENTICATED]
        if self.name.startswith(SERVICE_ACCOUNT_PREFIX):
            namespace = self.name[len(SERVICE_ACCOUNT_PREFIX) :].split(":", 1)[0]
            extra += ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
        return tuple(dict.fromkeys((*self.groups, *extra)))


@dataclass(frozen=True)
class _Token:
    user: UserInfo
    expires_at: float | None = None  # unix seconds


def parse_token_file(path: str | Path) -> dict[str, UserInfo]:
    """kube-apiserver's static token file: `token,user,uid[,"group1,group2"]` per line."""
    tokens: dict[str, UserInfo] = {}
    with open(path, newline="") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{number}: expected token,user,uid[,groups]")
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
            tokens[row[0].strip()] = UserInfo(row[1].strip(), groups)
    return tokens


@dataclass
class Authenticator:
    """Who a request is, or None (401). Thread-safe: tests change tokens while requests are served."""

    client_certificates: bool = False
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def with_tokens(
        cls, tokens: dict[str, UserInfo | str] | None, *, client_certificates: bool = False
    ) -> Authenticator:
        auth = cls(client_certificates=client_certificates)
        for token, user in (tokens or {}).items():
            auth.set_token(token, user)
        return auth

    def set_token(
        self, token: str, user: UserInfo | str, groups: tuple[str, ...] = (), *, expires_at: float | None = None
    ) -> None:
        """Accept `token` as `user` (until `expires_at`, unix seconds, if given)."""
        info = user if isinstance(user, UserInfo) else UserInfo(user, tuple(groups))
        with self._lock:
            self._tokens[token] = _Token(info, expires_at)

    def remove_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def replace_tokens(self, tokens: dict[str, UserInfo | str]) -> None:
        with self._lock:
            self._tokens = {t: _Token(u if isinstance(u, UserInfo) else UserInfo(u)) for t, u in tokens.items()}

    def tokens(self) -> dict[str, UserInfo]:
        with self._lock:
            return {t: entry.user for t, entry in self._tokens.items()}

    def authenticate(
        self, authorization: str | None, peer_identity: tuple[str, tuple[str, ...]] | None
    ) -> UserInfo | None:
        """The identity of a request: its client certificate (verified in the TLS handshake) if it presents one,
        else its bearer token, in kube-apiserver's order (x509 before tokens)."""
        if self.client_certificates and peer_identity and peer_identity[0]:
            return UserInfo(peer_identity[0], peer_identity[1])
        if authorization:
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                with self._lock:
                    entry = self._tokens.get(credential.strip())
                if entry is None or (entry.expires_at is not None and time.time() >= entry.expires_at):
                    return None
                return entry.user
        return None
