"""Tests for qtchat.tlsutil: the host certificate, fingerprints, pins, Qt loading."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import logging
import re
import stat
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PySide6.QtNetwork import (
    QHostAddress,
    QSslConfiguration,
    QSslError,
    QSslServer,
    QSslSocket,
)

from qtchat.tlsutil import (
    PinStore,
    ensure_certificate,
    fingerprint_of_der,
    fingerprint_of_pem,
    load_qt_credentials,
    normalize_fingerprint,
    qt_fingerprint,
)

CANONICAL_RE = re.compile(r"(?:[0-9A-F]{2}:){31}[0-9A-F]{2}")
FP_A = ":".join(["AB"] * 32)
FP_B = ":".join(["CD"] * 32)
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@pytest.fixture
def cert_pair(tmp_path: Path) -> tuple[Path, Path]:
    return ensure_certificate(tmp_path / "data", "Test room")


# --------------------------------------------------------------------------- certificate


def test_certificate_is_made_once_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "not" / "yet" / "there"
    cert_path, key_path = ensure_certificate(data_dir, "Alice's room")
    cert_bytes, key_bytes = cert_path.read_bytes(), key_path.read_bytes()
    fingerprint = fingerprint_of_pem(cert_bytes)

    again = ensure_certificate(data_dir, "Another name is ignored now")

    assert again == (cert_path, key_path)
    assert cert_path.read_bytes() == cert_bytes
    assert key_path.read_bytes() == key_bytes
    assert fingerprint_of_pem(cert_path.read_bytes()) == fingerprint
    assert sorted(p.name for p in data_dir.iterdir()) == sorted([cert_path.name, key_path.name])


@posix_only
def test_private_key_is_owner_only(cert_pair: tuple[Path, Path]) -> None:
    _, key_path = cert_pair
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


@posix_only
def test_loose_key_permissions_are_tightened(cert_pair: tuple[Path, Path]) -> None:
    cert_path, key_path = cert_pair
    key_path.chmod(0o644)
    ensure_certificate(cert_path.parent, "Test room")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_certificate_contents(cert_pair: tuple[Path, Path]) -> None:
    cert_path, key_path = cert_pair
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "Test room"
    # Self-signed by that key.
    cert.verify_directly_issued_by(cert)
    public = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert cert.public_key().public_bytes(*public) == key.public_key().public_bytes(*public)

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("::1") in san.get_values_for_type(x509.IPAddress)

    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc < now
    assert cert.not_valid_after_utc - now > datetime.timedelta(days=10 * 365)


@pytest.mark.parametrize("damage", ["garbage key", "missing key", "garbage cert", "other key"])
def test_damaged_pair_is_replaced(
    cert_pair: tuple[Path, Path], damage: str, caplog: pytest.LogCaptureFixture, qapp: object
) -> None:
    cert_path, key_path = cert_pair
    old_fingerprint = fingerprint_of_pem(cert_path.read_bytes())
    if damage == "garbage key":
        key_path.write_bytes(b"not a key")
    elif damage == "missing key":
        key_path.unlink()
    elif damage == "garbage cert":
        cert_path.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    else:  # a valid key that does not belong to the certificate
        other = ec.generate_private_key(ec.SECP256R1())
        key_path.write_bytes(
            other.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    with caplog.at_level(logging.WARNING, logger="qtchat.tlsutil"):
        new_cert, new_key = ensure_certificate(cert_path.parent, "Test room")

    assert "Making a new TLS certificate" in caplog.text
    assert fingerprint_of_pem(new_cert.read_bytes()) != old_fingerprint
    load_qt_credentials(new_cert, new_key)  # the new pair is usable


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_forms_agree(cert_pair: tuple[Path, Path], qapp: object) -> None:
    """cryptography, hashlib over DER, and Qt's digest give the same canonical text."""
    cert_path, key_path = cert_pair
    pem = cert_path.read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    qt_cert, qt_key = load_qt_credentials(cert_path, key_path)

    from_pem = fingerprint_of_pem(pem)
    assert CANONICAL_RE.fullmatch(from_pem)
    assert fingerprint_of_pem(pem.decode("ascii")) == from_pem
    assert fingerprint_of_der(der) == from_pem
    assert from_pem.replace(":", "").lower() == hashlib.sha256(der).hexdigest()
    assert qt_fingerprint(qt_cert) == from_pem
    assert fingerprint_of_der(bytes(qt_cert.toDer().data())) == from_pem
    assert not qt_key.isNull()


def test_fingerprint_of_der_refuses_pem(cert_pair: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="PEM"):
        fingerprint_of_der(cert_pair[0].read_bytes())


@pytest.mark.parametrize(
    "text",
    [
        FP_A,
        FP_A.lower(),
        FP_A.replace(":", ""),
        FP_A.replace(":", "").lower(),
        f"  {FP_A}\n",
        "aB:" + ":".join(["AB"] * 31),
    ],
)
def test_normalize_fingerprint_accepts(text: str) -> None:
    assert normalize_fingerprint(text) == FP_A


@pytest.mark.parametrize(
    "text",
    [
        "",
        "AB:CD",
        FP_A[:-3],  # 31 pairs
        FP_A + ":AB",  # 33 pairs
        FP_A.replace(":", "")[:-1],  # 63 digits
        "GG" + FP_A[2:],  # not hex
        "A:BAB" + FP_A[5:],  # colons in the wrong places
        FP_A.replace(":", " "),
        "SHA256:" + FP_A,
    ],
)
def test_normalize_fingerprint_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="fingerprint"):
        normalize_fingerprint(text)


# --------------------------------------------------------------------------- Qt


def test_load_qt_credentials_rejects_garbage(tmp_path: Path, qapp: object) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("nothing here")
    cert_path, key_path = ensure_certificate(tmp_path, "x")
    with pytest.raises(ValueError, match="certificate"):
        load_qt_credentials(bad, key_path)
    with pytest.raises(ValueError, match="private key"):
        load_qt_credentials(cert_path, bad)


def test_qt_tls_handshake_shows_the_pinned_fingerprint(
    cert_pair: tuple[Path, Path], qtbot: object, qapp: object
) -> None:
    """A QSslServer with these credentials hands the client the certificate we fingerprinted."""
    cert_path, key_path = cert_pair
    fingerprint = fingerprint_of_pem(cert_path.read_bytes())
    cert, key = load_qt_credentials(cert_path, key_path)

    config = QSslConfiguration.defaultConfiguration()
    config.setLocalCertificate(cert)
    config.setPrivateKey(key)
    server = QSslServer(qapp)
    server.setSslConfiguration(config)
    assert server.listen(QHostAddress(QHostAddress.SpecialAddress.LocalHost), 0)
    client = QSslSocket(qapp)
    try:
        # What a pinning client does: accept exactly "self-signed" for exactly this certificate.
        client.ignoreSslErrors([QSslError(QSslError.SslError.SelfSignedCertificate, cert)])
        with qtbot.waitSignal(client.encrypted, timeout=10_000):  # type: ignore[attr-defined]
            client.connectToHostEncrypted("127.0.0.1", server.serverPort())
        assert qt_fingerprint(client.peerCertificate()) == fingerprint
    finally:
        client.abort()
        client.deleteLater()
        server.close()
        server.deleteLater()


def test_qt_fingerprint_of_empty_certificate(qapp: object) -> None:
    from PySide6.QtNetwork import QSslCertificate

    with pytest.raises(ValueError):
        qt_fingerprint(QSslCertificate())


# --------------------------------------------------------------------------- pins


def test_pin_store_trust_on_first_use(tmp_path: Path) -> None:
    pins = PinStore(tmp_path)
    assert pins.get("192.168.1.20:8800") is None
    assert pins.check("192.168.1.20:8800", FP_A) == "new"
    assert pins.get("192.168.1.20:8800") is None  # check() alone remembers nothing

    pins.remember("192.168.1.20:8800", FP_A.lower().replace(":", ""))
    assert pins.get("192.168.1.20:8800") == FP_A
    assert pins.check("192.168.1.20:8800", FP_A) == "match"
    assert pins.check("192.168.1.20:8800", FP_A.replace(":", "").lower()) == "match"
    assert pins.check("192.168.1.20:8800", FP_B) == "changed"
    assert pins.check("192.168.1.20:8801", FP_A) == "new"  # pins are per host *and* port

    # Accepting the change (after asking the person) replaces the pin.
    pins.remember("192.168.1.20:8800", FP_B)
    assert pins.check("192.168.1.20:8800", FP_B) == "match"


def test_pin_store_persists_and_folds_host_case(tmp_path: Path) -> None:
    PinStore(tmp_path).remember("Alice-Laptop.local:8800", FP_A)
    PinStore(tmp_path).remember("[fe80::1]:8800", FP_B)

    reopened = PinStore(tmp_path)
    assert reopened.check("alice-laptop.local:8800", FP_A) == "match"
    assert reopened.get("[FE80::1]:8800") == FP_B
    document = json.loads((tmp_path / "known-servers.json").read_text(encoding="utf-8"))
    assert document == {
        "version": 1,
        "pins": {"[fe80::1]:8800": FP_B, "alice-laptop.local:8800": FP_A},
    }


def test_pin_store_forget(tmp_path: Path) -> None:
    pins = PinStore(tmp_path)
    pins.remember("h:1", FP_A)
    pins.forget("h:1")
    pins.forget("h:1")  # twice is harmless
    assert pins.check("h:1", FP_A) == "new"


def test_pin_store_rejects_bad_input(tmp_path: Path) -> None:
    pins = PinStore(tmp_path)
    with pytest.raises(ValueError):
        pins.remember("h:1", "not a fingerprint")
    with pytest.raises(ValueError):
        pins.check("h:1", "AB:CD")
    with pytest.raises(ValueError):
        pins.remember("  ", FP_A)


def test_damaged_pin_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "known-servers.json"
    path.write_text("{not json", encoding="utf-8")
    pins = PinStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="qtchat.tlsutil"):
        assert pins.get("h:1") is None
    assert "damaged" in caplog.text
    assert (tmp_path / "known-servers.json.corrupt").read_text(encoding="utf-8") == "{not json"
    pins.remember("h:1", FP_A)
    assert PinStore(tmp_path).get("h:1") == FP_A


def test_damaged_pin_entry_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "known-servers.json"
    path.write_text(json.dumps({"version": 1, "pins": {"a:1": "junk", "b:2": FP_A}}))
    pins = PinStore(tmp_path)
    assert pins.get("a:1") is None
    assert pins.get("b:2") == FP_A
