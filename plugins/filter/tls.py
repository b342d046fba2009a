"""TLS material checks and paths, shared by every role that serves HTTPS.

The roles check the inventory's certificate, key and CA on the controller
(preflight) with ``tls_problems`` before anything is copied to a host, so a
certificate that does not match its key, has expired or was not signed by
the CA is refused with a clear reason and the running service keeps its own.
Unit-tested in tests/unit/test_tls_filters.py.
"""

from __future__ import annotations

import datetime
import ipaddress

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtensionOID

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - cryptography ships with ansible-core
    HAS_CRYPTOGRAPHY = False

# Where the shared tasks (roles/service/tasks/tls.yml) put the material on a host.
CA_PATH = "/etc/ssl/obs/ca.crt"


def tls_files(service: str) -> dict:
    """'prometheus' | tls_files -> the host paths of the CA, certificate and key of that service."""
    return {"ca": CA_PATH, "cert": f"/etc/{service}/tls/server.crt", "key": f"/etc/{service}/tls/server.key"}


def tls_paths(service: str) -> list:
    """Every host path of that service's TLS material, files and their directories (for obs_host_state)."""
    files = list(tls_files(service).values())
    return files + sorted({path.rsplit("/", 1)[0] for path in files})


def tls_dial_names(host_vars: dict) -> list:
    """The names a host's certificate must carry: what its clients dial (its inventory name,
    obs_address and ansible_host when set) and loopback (the readiness checks, published ports).
    ``host_vars``: hostvars[<host>]. playbooks/pki.yml issues these, preflight checks them."""
    names = [host_vars.get("inventory_hostname"), host_vars.get("obs_address"), host_vars.get("ansible_host")]
    out = []
    for name in [*names, "localhost", "127.0.0.1"]:
        if name and str(name) not in out:
            out.append(str(name))
    return out


def _load_cert(pem: str, what: str, problems: list):
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except (ValueError, TypeError, AttributeError) as exc:
        problems.append(f"{what} is not a PEM certificate ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})")
        return None


def _valid_between(cert):
    start = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before.replace(tzinfo=datetime.UTC)
    end = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=datetime.UTC)
    return start, end


def _san_names(cert) -> set:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return set()
    names = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    names |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return names


def _name_key(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return name.lower()


def _pair_problems(cert, key, ca, when) -> list:
    """Key match, validity now and the CA's signature of one certificate."""
    problems: list = []
    subject = cert.subject.rfc4514_string()
    if key is not None:
        ours = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        theirs = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if ours != theirs:
            problems.append(f"the private key does not match the certificate {subject}")
    start, end = _valid_between(cert)
    if when > end:
        problems.append(f"the certificate {subject} expired on {end.isoformat()}")
    elif when < start:
        problems.append(f"the certificate {subject} is not valid before {start.isoformat()}")
    ca_name = ca.subject.rfc4514_string()
    ca_start, ca_end = _valid_between(ca)
    if not ca_start <= when <= ca_end:
        problems.append(
            f"the CA certificate {ca_name} is not valid now ({ca_start.isoformat()} to {ca_end.isoformat()})"
        )
    try:
        cert.verify_directly_issued_by(ca)
    except Exception as exc:  # ValueError/TypeError with a reason; InvalidSignature carries none
        reason = str(exc) or exc.__class__.__name__
        problems.append(
            f"the CA {ca_name} did not sign the certificate {subject} (issuer {cert.issuer.rfc4514_string()}: {reason})"
        )
    return problems


def tls_problems(cert_pem, key_pem, ca_pem, names=None, now=None) -> list:
    """Why this certificate cannot serve TLS for ``names``; [] when it can.

    Checks that all three parse, that the key is the certificate's, that the
    certificate is valid now (``now``: an ISO date-time for tests), that the CA
    signed it, that the CA itself is valid, and that every name a client dials
    (host names and addresses) is among its subject alternative names. The
    messages never contain key material.
    """
    if not HAS_CRYPTOGRAPHY:
        return ["the Python cryptography library is missing on the controller (it ships with ansible-core)"]
    problems: list = []
    for value, what in ((cert_pem, "the certificate"), (key_pem, "the private key"), (ca_pem, "the CA certificate")):
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{what} is empty (set it in the inventory: a vault value or a lookup('file', path))")
    if problems:
        return problems
    when = datetime.datetime.fromisoformat(now) if now else datetime.datetime.now(datetime.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    cert = _load_cert(cert_pem, "the certificate", problems)
    ca = _load_cert(ca_pem, "the CA certificate", problems)
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        # The exception text never holds the key; keep only its first line.
        problems.append(f"the private key is not an unencrypted PEM key ({exc.__class__.__name__})")
        key = None
    if cert is None or ca is None:
        return problems
    problems += _pair_problems(cert, key, ca, when)
    subject = cert.subject.rfc4514_string()
    sans = _san_names(cert)
    missing = sorted({_name_key(n) for n in names or [] if n} - sans)
    if missing:
        have = ", ".join(sorted(sans)) or "none"
        problems.append(f"the certificate {subject} does not name {', '.join(missing)} (its names: {have})")
    return problems


class FilterModule:
    def filters(self):
        return {
            "tls_problems": tls_problems,
            "tls_files": tls_files,
            "tls_paths": tls_paths,
            "tls_dial_names": tls_dial_names,
        }
