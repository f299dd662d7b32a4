"""What a failed TLS handshake means and what to fix, for the gateways to the Kubernetes API and to Prometheus.

Both clients hand us only the text of OpenSSL's error (the kubernetes client turns urllib3's SSLError into an
ApiException with status 0 and the text as its reason; requests wraps it twice), so the sentence is chosen from
OpenSSL's words: `certificate verify failed: ...` (our side refused the server's certificate), `... mismatch,
certificate is not valid for ...` (the name in the URL), `tlsv1 alert ...` (the server refused us, in practice our
client certificate), `wrong version number` (no TLS on the other side).
"""

from __future__ import annotations

import re

_OPENSSL = re.compile(r"\[SSL: [A-Z0-9_]+\] ([^(]+?)\s*\(_ssl\.c:\d+\)")


def is_tls_error(text: str) -> bool:
    return "[SSL:" in text or "SSLError" in text or "SSLCertVerificationError" in text


def _openssl_words(text: str) -> str:
    found = _OPENSSL.search(text)
    words = found.group(1).strip() if found else text.strip().splitlines()[-1][:300]
    return words.removeprefix("certificate verify failed: ")


def tls_problem(text: str, peer: str, host: str, *, ca_source: str, name_fix: str) -> str:
    """One or two sentences: `peer` names the server ("the API server", "Prometheus"), `ca_source` where the CA
    we check it with comes from ("the kubeconfig"), `name_fix` how to make the names agree."""
    words = _openssl_words(text)
    lower = text.lower()
    if "mismatch" in lower or "not valid for" in lower:
        return f"TLS: {peer}'s certificate is not valid for the name in the URL {host} ({words}). {name_fix}"
    if "certificate verify failed" in lower:
        if "expired" in lower:
            return f"TLS: {peer}'s certificate has expired ({words}). Renew the server's certificate."
        if "not yet valid" in lower:
            return f"TLS: {peer}'s certificate is not valid yet ({words}). Check the clocks of both machines."
        return (
            f"TLS: the CA in {ca_source} does not sign {peer}'s certificate (certificate verify failed: {words}). "
            f"Put the CA that signed the server's certificate in {ca_source}; do not turn verification off."
        )
    if "wrong version number" in lower or "record layer" in lower or "packet length too long" in lower:
        return f"TLS: {host} does not speak TLS ({words}). Check the scheme (https or http) of the URL."
    if "eof occurred" in lower or "unexpected eof" in lower:
        # TLS 1.3: a server that refuses our certificate says so after our side thinks the handshake is done, and
        # the alert may be lost to the request already on its way.
        return (
            f"TLS: {peer} closed the connection during the handshake ({words}): it may not accept our client "
            "certificate (missing, expired, or not signed by a CA it trusts), or something between us cuts TLS."
        )
    if "alert" in lower:
        return (
            f"TLS: {peer} ended the handshake ({words}): it does not accept our client certificate (missing, "
            "expired, or not signed by a CA it trusts). Get a new client certificate."
        )
    return f"TLS: the handshake with {peer} at {host} failed ({words})."
