"""TLS of the Loki and Promtail STAND-INS (tests only; not Loki, not Promtail).

Loki and Promtail serve HTTP through dskit's server, whose TLS block is
``server.http_tls_config`` {cert_file, key_file, client_auth_type,
client_ca_file} with ``server.tls_min_version`` (VersionTLS10..VersionTLS13)
and ``server.tls_cipher_suites``; Promtail pushes through Prometheus' common
HTTP client, whose ``tls_config`` is {ca_file, cert_file, key_file,
server_name, insecure_skip_verify, min_version (TLS10..TLS13)}. Both
stand-ins ship as one executable file, as the releases do, so their
package.sh inlines this file between the ``>>> dskit_tls`` markers
(tests/standins/inline.sh); run from the tree, they import it.

Behaviour kept from Go's servers: the certificate and key are loaded when the
server starts (a pair that does not match fails the start), the handshake
runs in the connection's own thread, a plain-HTTP request gets Go's
``400 Client sent an HTTP request to an HTTPS server.``, and a failed
handshake is logged as ``http: TLS handshake error from ADDR: ...``.
Not implemented (refused when set): cipher suite lists, server_name, and
the client-auth types Python's ssl cannot express (RequestClientCert,
RequireAnyClientCert).
"""

from __future__ import annotations

import socket
import ssl

SERVER_VERSIONS = {"VersionTLS10": "TLSv1", "VersionTLS11": "TLSv1_1", "VersionTLS12": "TLSv1_2"}
SERVER_VERSIONS["VersionTLS13"] = "TLSv1_3"
CLIENT_VERSIONS = {"TLS" + key[len("VersionTLS") :]: value for key, value in SERVER_VERSIONS.items()}
CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
PLAIN_HTTP = (b"GET ", b"POST", b"HEAD", b"PUT ", b"DELET", b"OPTIO", b"PATCH", b"CONNE", b"TRACE")
PLAIN_HTTP_ANSWER = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
HANDSHAKE_TIMEOUT = 10.0


class TLSConfigError(Exception):
    """The TLS settings cannot be used; the message says which and why."""


def _version(table: dict, name: str, what: str) -> ssl.TLSVersion | None:
    if not name:
        return None
    if name not in table:
        raise TLSConfigError(f"{what}: unknown TLS version: {name} (one of {', '.join(table)})")
    return getattr(ssl.TLSVersion, table[name])


def _load_pair(context: ssl.SSLContext, cert: str, key: str, what: str, files: bool) -> None:
    if bool(cert) != bool(key):
        raise TLSConfigError(f"{what}: cert_file and key_file must both be set (cert_file={cert!r}, key_file={key!r})")
    if not files:
        return
    for path in (cert, key):  # ssl names no file in its errors; Go's open error does
        try:
            with open(path, "rb"):
                pass
        except FileNotFoundError as exc:
            raise TLSConfigError(f"{what}: open {path}: no such file or directory") from exc
        except PermissionError as exc:
            raise TLSConfigError(f"{what}: open {path}: permission denied") from exc
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TLSConfigError(f"{what}: tls: private key does not match public key or is not PEM ({exc})") from exc


def _load_ca(context: ssl.SSLContext, path: str, what: str, files: bool) -> None:
    if not files:
        return
    try:
        context.load_verify_locations(cafile=path)
    except FileNotFoundError as exc:
        raise TLSConfigError(f"{what}: unable to load specified CA cert {path}: open {path}: no such file") from exc
    except PermissionError as exc:
        raise TLSConfigError(f"{what}: unable to load specified CA cert {path}: permission denied") from exc
    except ssl.SSLError as exc:
        raise TLSConfigError(f"{what}: unable to use specified CA cert {path} ({exc})") from exc


def server_context(server: dict, files: bool = True) -> ssl.SSLContext | None:
    """The SSL context of dskit's ``server`` block, or None when it serves plain HTTP (no cert_file, key_file).
    ``files=False``: check the settings only (a syntax check; the files are read when the server starts)."""
    tls = server.get("http_tls_config") or {}
    cert, key = tls.get("cert_file") or "", tls.get("key_file") or ""
    what = "http_tls_config"
    if not cert and not key:
        return None
    if server.get("tls_cipher_suites"):
        raise TLSConfigError("server.tls_cipher_suites: not implemented by the stand-in (Go's default suites only)")
    auth = tls.get("client_auth_type") or ""
    if auth not in CLIENT_AUTH:
        raise TLSConfigError(
            f"{what}: client_auth_type {auth!r}: the stand-in implements {', '.join(a for a in CLIENT_AUTH if a)}"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    minimum = _version(SERVER_VERSIONS, server.get("tls_min_version") or "", "server.tls_min_version")
    context.minimum_version = minimum or ssl.TLSVersion.TLSv1_2  # Go's server default
    _load_pair(context, cert, key, what, files)
    context.verify_mode = CLIENT_AUTH[auth]
    if tls.get("client_ca_file"):
        _load_ca(context, tls["client_ca_file"], what, files)
    elif context.verify_mode != ssl.CERT_NONE:
        raise TLSConfigError(f"{what}: client_auth_type {auth} needs client_ca_file")
    return context


def serve_tls(httpd, context: ssl.SSLContext, log_error) -> None:
    """Make a socketserver (ThreadingHTTPServer) speak TLS: each connection's handshake runs in its own thread."""
    finish = httpd.finish_request

    def finish_request(request: socket.socket, client_address) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        peer = f"{client_address[0]}:{client_address[1]}"
        try:
            if request.recv(5, socket.MSG_PEEK).startswith(PLAIN_HTTP):
                request.sendall(PLAIN_HTTP_ANSWER)
                return
            tls = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log_error(f"http: TLS handshake error from {peer}: {exc}")
            return
        try:
            tls.settimeout(None)
            finish(tls, client_address)
        finally:
            tls.close()

    httpd.finish_request = finish_request


def client_context(tls: dict, what: str, files: bool = True) -> ssl.SSLContext:
    """The SSL context of a Prometheus-style client ``tls_config`` (system CAs when there is no ca_file).
    ``files=False``: check the settings only."""
    if tls.get("server_name"):
        raise TLSConfigError(f"{what}: tls_config.server_name is not implemented by the stand-in")
    context = ssl.create_default_context()
    if tls.get("insecure_skip_verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.get("ca_file"):
        _load_ca(context, tls["ca_file"], what, files)
    if tls.get("cert_file") or tls.get("key_file"):
        _load_pair(context, tls.get("cert_file") or "", tls.get("key_file") or "", what, files)
    minimum = _version(CLIENT_VERSIONS, tls.get("min_version") or "", f"{what}: tls_config.min_version")
    context.minimum_version = minimum or ssl.TLSVersion.TLSv1_2
    return context
