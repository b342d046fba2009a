"""Test certificates made with cryptography: a CA and host certificates signed by it.

Shared by the preflight checks' tests (test_tls_filters.py, each way a
certificate can be wrong) and the tests that run a server over HTTPS (the
stand-ins, Jaeger): real X.509 material, so real TLS clients verify it.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK_NAMES = ("localhost", "127.0.0.1")


def pem(obj) -> str:
    """A certificate or a private key (PKCS#8, unencrypted) as PEM text."""
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def cert(subject: str, key, issuer_name: str, issuer_key, *, ca=False, names=(), start=None, days=365):
    """A certificate of ``key`` for ``subject`` signed by ``issuer_key``; ``names``: DNS or IP SANs."""
    start = start or datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        sans = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pki(directory: Path, host: str = "obs-host", names: tuple = ()) -> dict:
    """A CA and a certificate for ``host``, ``names`` and loopback, written as ca.crt, server.crt and server.key.

    Returns the paths, the PEM texts, and ``vars``: the inventory variables a
    role render takes for TLS (obs_tls_enabled, obs_tls_ca_cert, obs_tls_cert, obs_tls_key).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, key = new_key(), new_key()
    ca = cert("test CA", ca_key, "test CA", ca_key, ca=True, days=3650)
    server = cert(host, key, "test CA", ca_key, names=(host, *names, *LOOPBACK_NAMES))
    texts = {"ca": pem(ca), "cert": pem(server), "key": pem(key)}
    paths = {"ca": directory / "ca.crt", "cert": directory / "server.crt", "key": directory / "server.key"}
    for what, path in paths.items():
        path.write_text(texts[what])
    tls_vars = {
        "obs_tls_enabled": True,
        "obs_tls_ca_cert": texts["ca"],
        "obs_tls_cert": texts["cert"],
        "obs_tls_key": texts["key"],
    }
    return {**{k: str(v) for k, v in paths.items()}, "pem": texts, "vars": tls_vars, "ca_key": ca_key}
