"""plugins/filter/tls.py: the preflight check of the inventory's TLS material.

Certificates are made here with cryptography (a CA, a host certificate, and
each way one can be wrong), and so are checked by real X.509 parsing and
signature verification, not by string matching.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pki import cert
from pki import pem as _pem

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "filter"))

import tls

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def _cert(*args, start=None, **kwargs):
    """pki.cert, valid from the day before NOW (the checks below run at NOW)."""
    return cert(*args, start=start or NOW - datetime.timedelta(days=1), **kwargs)


@pytest.fixture(scope="module")
def pki():
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, "test CA", ca_key, ca=True, days=3650)
    key = ec.generate_private_key(ec.SECP256R1())
    names = ("obs-host", "localhost", "127.0.0.1")
    cert = _cert("obs-host", key, "test CA", ca_key, names=names)
    return {"ca_key": ca_key, "ca": ca, "key": key, "cert": cert, "names": list(names)}


def _problems(cert, key, ca, names=(), now=NOW):
    return tls.tls_problems(_pem(cert), _pem(key), _pem(ca), list(names), now.isoformat())


def test_matching_material_has_no_problem(pki):
    assert _problems(pki["cert"], pki["key"], pki["ca"], pki["names"]) == []


def test_a_key_that_is_not_the_certificates_is_refused(pki):
    other = ec.generate_private_key(ec.SECP256R1())
    problems = _problems(pki["cert"], other, pki["ca"], pki["names"])
    assert problems == ["the private key does not match the certificate CN=obs-host"]


def test_an_expired_certificate_is_refused(pki):
    old = _cert(
        "obs-host",
        pki["key"],
        "test CA",
        pki["ca_key"],
        names=pki["names"],
        start=NOW - datetime.timedelta(days=30),
        days=10,
    )
    problems = _problems(old, pki["key"], pki["ca"], pki["names"])
    assert len(problems) == 1 and problems[0].startswith("the certificate CN=obs-host expired on 2026-05-12"), problems


def test_a_certificate_not_yet_valid_is_refused(pki):
    future = _cert(
        "obs-host", pki["key"], "test CA", pki["ca_key"], names=pki["names"], start=NOW + datetime.timedelta(days=2)
    )
    assert "is not valid before" in " ".join(_problems(future, pki["key"], pki["ca"], pki["names"]))


def test_a_ca_that_did_not_sign_the_certificate_is_refused(pki):
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert("other CA", other_key, "other CA", other_key, ca=True, days=3650)
    problems = _problems(pki["cert"], pki["key"], other_ca, pki["names"])
    assert len(problems) == 1 and problems[0].startswith(
        "the CA CN=other CA did not sign the certificate CN=obs-host"
    ), problems


def test_a_forged_issuer_name_does_not_pass_for_the_ca(pki):
    """Same issuer name as the CA, signed by another key: the signature decides."""
    impostor = ec.generate_private_key(ec.SECP256R1())
    forged = _cert("obs-host", pki["key"], "test CA", impostor, names=pki["names"])
    assert "did not sign" in " ".join(_problems(forged, pki["key"], pki["ca"], pki["names"]))


def test_a_name_clients_dial_missing_from_the_certificate_is_refused(pki):
    problems = _problems(pki["cert"], pki["key"], pki["ca"], [*pki["names"], "obs-other", "10.0.0.7"])
    assert problems == [
        "the certificate CN=obs-host does not name 10.0.0.7, obs-other (its names: 127.0.0.1, localhost, obs-host)"
    ]


def test_empty_and_garbage_material_are_named(pki):
    assert tls.tls_problems("", _pem(pki["key"]), _pem(pki["ca"])) == [
        "the certificate is empty (set it in the inventory: a vault value or a lookup('file', path))"
    ]
    problems = tls.tls_problems("not a cert", "not a key", _pem(pki["ca"]))
    assert problems[0].startswith("the certificate is not a PEM certificate")
    assert problems[1] == "the private key is not an unencrypted PEM key (ValueError)"


def test_messages_never_carry_the_key(pki):
    key_pem = _pem(pki["key"])
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert("other CA", other_key, "other CA", other_key, ca=True)
    text = " ".join(tls.tls_problems(_pem(pki["cert"]), key_pem + "garbage", _pem(other_ca), ["nope"]))
    body = "".join(key_pem.splitlines()[1:-1])
    assert body[:40] not in text and "PRIVATE KEY" not in text


def test_tls_files_are_per_service_with_one_ca():
    assert tls.tls_files("prometheus") == {
        "ca": tls.CA_PATH,
        "cert": "/etc/prometheus/tls/server.crt",
        "key": "/etc/prometheus/tls/server.key",
    }
    assert tls.tls_files("node_exporter")["ca"] == tls.tls_files("alertmanager")["ca"]


def test_tls_paths_list_the_files_and_their_directories():
    assert tls.tls_paths("alertmanager") == [
        tls.CA_PATH, "/etc/alertmanager/tls/server.crt", "/etc/alertmanager/tls/server.key",
        "/etc/alertmanager/tls", "/etc/ssl/obs",
    ]  # fmt: skip


def test_dial_names_are_what_clients_use_then_loopback_once_each():
    assert tls.tls_dial_names({"inventory_hostname": "mon-1", "ansible_host": "10.0.0.1", "obs_address": ""}) == [
        "mon-1", "10.0.0.1", "localhost", "127.0.0.1",
    ]  # fmt: skip
    assert tls.tls_dial_names({"inventory_hostname": "mon-1", "ansible_host": "mon-1"}) == [
        "mon-1",
        "localhost",
        "127.0.0.1",
    ]
