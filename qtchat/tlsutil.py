"""TLS helpers: the host's self-signed certificate, fingerprints, and pins.

The host makes one self-signed certificate on first use and keeps it, so its
SHA-256 fingerprint stays the same across restarts; that fingerprint is what
invites and discovery carry and what clients pin (trust on first use).

Everything here is plain Python on top of ``cryptography`` except the two
functions at the end (``load_qt_credentials``, ``qt_fingerprint``), which import
QtNetwork only when called, so headless tools can use the rest without Qt.

Usage::

    cert_path, key_path = ensure_certificate(data_dir, "Alice's room")
    fingerprint = fingerprint_of_pem(cert_path.read_bytes())   # "AB:CD:…"
    cert, key = load_qt_credentials(cert_path, key_path)       # for QSslConfiguration

    pins = PinStore(app_data_dir)
    match pins.check("192.168.1.20:8800", qt_fingerprint(socket.peerCertificate())):
        case "new": pins.remember(...)      # trust on first use
        case "match": ...                   # carry on
        case "changed": ...                 # refuse, warn the person
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import re
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

# ``cryptography`` (about 12 MB resident) is imported by the functions that make or read
# certificates, not here: fingerprints and invites need none of it, and a server that
# never touches TLS should not carry it.
if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from PySide6.QtNetwork import QSslCertificate, QSslKey

logger = logging.getLogger(__name__)

__all__ = [
    "CERT_FILENAME",
    "KEY_FILENAME",
    "PIN_FILENAME",
    "PinStatus",
    "PinStore",
    "ensure_certificate",
    "fingerprint_of_der",
    "fingerprint_of_pem",
    "load_qt_credentials",
    "normalize_fingerprint",
    "qt_fingerprint",
]

CERT_FILENAME = "qtchat-cert.pem"
KEY_FILENAME = "qtchat-key.pem"
PIN_FILENAME = "known-servers.json"

#: Long enough that nobody meets an expiry in practice; clients pin the
#: fingerprint rather than trusting dates, and a new certificate would make
#: every client warn that it changed.
CERT_VALIDITY = datetime.timedelta(days=20 * 365)
#: Tolerate a peer whose clock is somewhat behind ours.
CLOCK_SKEW = datetime.timedelta(days=1)

_FINGERPRINT_HEX_DIGITS = 64  # SHA-256
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")
# A DNS label that fits in a certificate's dNSName (IA5String).
_DNS_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")

PinStatus = Literal["new", "match", "changed"]


# --------------------------------------------------------------------------- fingerprints


def _format_fingerprint(digest: bytes) -> str:
    """The canonical text form: uppercase hex pairs joined by ':'."""
    return ":".join(f"{byte:02X}" for byte in digest)


def normalize_fingerprint(text: str) -> str:
    """Return ``text`` as a canonical SHA-256 fingerprint ("AB:CD:…", 32 pairs).

    Accepts upper or lower case, with colons between every pair or none at all,
    and white space around it. Raises ValueError with a sentence a person can
    read when it is not a SHA-256 fingerprint.
    """
    if not isinstance(text, str):
        raise TypeError(f"fingerprint must be str, not {type(text).__name__}")
    cleaned = text.strip()
    if ":" in cleaned:
        pairs = cleaned.split(":")
        if not all(len(pair) == 2 for pair in pairs):
            raise ValueError(
                "A certificate fingerprint is 32 pairs of hexadecimal digits separated "
                "by colons, e.g. AB:CD:…; this one is damaged."
            )
        cleaned = "".join(pairs)
    if len(cleaned) != _FINGERPRINT_HEX_DIGITS or not _HEX_RE.fullmatch(cleaned):
        raise ValueError(
            "A certificate fingerprint is 64 hexadecimal digits (SHA-256), "
            "e.g. AB:CD:…; this one is incomplete or damaged."
        )
    return _format_fingerprint(bytes.fromhex(cleaned))


def fingerprint_of_der(der: bytes) -> str:
    """SHA-256 fingerprint of a DER-encoded certificate, in canonical form."""
    der = bytes(der)
    if der.lstrip().startswith(b"-----BEGIN"):
        raise ValueError("fingerprint_of_der() got PEM text; use fingerprint_of_pem()")
    return _format_fingerprint(hashlib.sha256(der).digest())


def fingerprint_of_pem(cert_pem: bytes | str) -> str:
    """SHA-256 fingerprint of the (first) certificate in PEM text, in canonical form."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    if isinstance(cert_pem, str):
        cert_pem = cert_pem.encode("ascii")
    cert = x509.load_pem_x509_certificate(cert_pem)
    return _format_fingerprint(cert.fingerprint(hashes.SHA256()))


# --------------------------------------------------------------------------- certificate


def ensure_certificate(data_dir: Path, common_name: str) -> tuple[Path, Path]:
    """Return ``(cert_path, key_path)`` of the host's certificate, making it on first use.

    The certificate is self-signed (EC P-256, SHA-256), valid for 20 years, with
    ``localhost``, this machine's host name, 127.0.0.1 and ::1 as subject
    alternative names. The private key file is readable by its owner only
    (0600). Later calls reuse the pair as long as it loads, belongs together and
    has not expired, so the fingerprint stays stable; ``common_name`` only
    matters the first time. A damaged pair is replaced (with a warning), which
    changes the fingerprint.
    """
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path = data_dir / CERT_FILENAME
    key_path = data_dir / KEY_FILENAME

    if cert_path.exists() or key_path.exists():
        problem = _problem_with_existing_pair(cert_path, key_path)
        if problem is None:
            _restrict_key_permissions(key_path)
            logger.debug("Reusing TLS certificate %s", cert_path)
            return cert_path, key_path
        logger.warning("Making a new TLS certificate: %s", problem)

    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed_certificate(key, common_name)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first: a reader that sees the new certificate also finds its key.
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    logger.info(
        "Made a TLS certificate %s with fingerprint %s",
        cert_path,
        _format_fingerprint(cert.fingerprint(hashes.SHA256())),
    )
    return cert_path, key_path


def _problem_with_existing_pair(cert_path: Path, key_path: Path) -> str | None:
    """Why the stored pair cannot be reused, or None when it can."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return f"the stored certificate or key could not be read ({exc})"
    public_format = (
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    if key.public_key().public_bytes(*public_format) != cert.public_key().public_bytes(
        *public_format
    ):
        return "the stored key does not belong to the stored certificate"
    if cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
        return "the stored certificate has expired"
    return None


def _self_signed_certificate(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    # cryptography refuses an empty CN or one longer than 64 characters.
    common_name = common_name.strip()[:64] or "qtchat"
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qtchat"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _subject_alt_names() -> list[x509.GeneralName]:
    from cryptography import x509

    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    hostname = socket.gethostname().rstrip(".")
    # Only names a dNSName can hold (ASCII labels); clients pin the fingerprint
    # anyway, so a host name that does not fit is merely left out.
    if hostname and all(_DNS_LABEL_RE.fullmatch(label) for label in hostname.split(".")):
        for candidate in (hostname, f"{hostname.split('.')[0]}.local"):
            if x509.DNSName(candidate) not in names:
                names.append(x509.DNSName(candidate))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    names.append(x509.IPAddress(ipaddress.ip_address("::1")))
    return names


def _restrict_key_permissions(key_path: Path) -> None:
    if sys.platform == "win32":  # POSIX modes mean little there; the profile dir is private
        return
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning("Private key %s was readable by others (%o); fixing to 0600", key_path, mode)
        key_path.chmod(0o600)


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file, so a crash never leaves half a file."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp already makes the file 0600; widen only when asked.
        os.chmod(tmp_name, mode)
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


# --------------------------------------------------------------------------- pins


class PinStore:
    """Fingerprints of servers seen before, per ``"host:port"`` (trust on first use).

    Kept as JSON in ``directory`` (the app passes its AppDataLocation). The file
    is read on every call, so two windows of one app, or two processes, agree.
    An unreadable file is moved aside (``*.corrupt``) rather than silently
    overwritten, and the store starts empty. Keys are compared with the host
    part lower-cased; pass IPv6 addresses in brackets (``"[fe80::1]:8800"``),
    as ``JoinTarget.hostport`` gives them.
    """

    def __init__(self, directory: Path, filename: str = PIN_FILENAME) -> None:
        self.path = Path(directory) / filename

    def get(self, hostport: str) -> str | None:
        """The fingerprint remembered for ``hostport``, or None."""
        return self._load().get(self._key(hostport))

    def check(self, hostport: str, fingerprint: str) -> PinStatus:
        """``'new'`` if nothing is remembered, ``'match'`` or ``'changed'`` otherwise.

        Does not remember anything: call ``remember`` once the person (or the
        policy for ``'new'``) has accepted the fingerprint.
        """
        presented = normalize_fingerprint(fingerprint)
        known = self.get(hostport)
        if known is None:
            return "new"
        if known == presented:
            return "match"
        logger.warning("Certificate of %s changed: pinned %s, now %s", hostport, known, presented)
        return "changed"

    def remember(self, hostport: str, fingerprint: str) -> None:
        """Pin ``fingerprint`` for ``hostport``, replacing any earlier pin."""
        pins = self._load()
        pins[self._key(hostport)] = normalize_fingerprint(fingerprint)
        self._save(pins)

    def forget(self, hostport: str) -> None:
        """Drop the pin for ``hostport`` (nothing happens if there is none)."""
        pins = self._load()
        if pins.pop(self._key(hostport), None) is not None:
            self._save(pins)

    @staticmethod
    def _key(hostport: str) -> str:
        # Only the host part has letters (the port is digits), so this folds the host.
        key = hostport.strip().lower()
        if not key:
            raise ValueError("hostport must not be empty")
        return key

    def _load(self) -> dict[str, str]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            document = json.loads(raw)
            stored = document["pins"]
            if not isinstance(stored, dict):
                raise TypeError("'pins' is not an object")
        except (ValueError, TypeError, KeyError) as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            logger.warning("Pin file %s is damaged (%s); moved it to %s", self.path, exc, aside)
            os.replace(self.path, aside)
            return {}
        pins: dict[str, str] = {}
        for hostport, fingerprint in stored.items():
            try:
                pins[hostport] = normalize_fingerprint(fingerprint)
            except (ValueError, TypeError):
                logger.warning("Ignoring a damaged pin for %r in %s", hostport, self.path)
        return pins

    def _save(self, pins: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {"version": 1, "pins": dict(sorted(pins.items()))}
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        _write_atomically(self.path, text.encode("utf-8"), mode=0o600)


# --------------------------------------------------------------------------- Qt


def load_qt_credentials(cert_path: Path, key_path: Path) -> tuple[QSslCertificate, QSslKey]:
    """Load the pair from ``ensure_certificate`` as Qt objects, for a QSslConfiguration.

    Raises ValueError if either file does not hold what Qt expects (or if Qt
    has no TLS backend, in which case the key cannot be parsed). Call it once a
    QCoreApplication exists: Qt's TLS backend warns ("QObject::connect … invalid
    nullptr parameter") when it first loads without one.
    """
    from PySide6.QtCore import QByteArray
    from PySide6.QtNetwork import QSsl, QSslCertificate, QSslKey

    cert = QSslCertificate(QByteArray(Path(cert_path).read_bytes()), QSsl.EncodingFormat.Pem)
    if cert.isNull():
        raise ValueError(f"{cert_path} does not hold a PEM certificate Qt can read")
    key_pem = QByteArray(Path(key_path).read_bytes())
    for algorithm in (QSsl.KeyAlgorithm.Ec, QSsl.KeyAlgorithm.Rsa):
        key = QSslKey(key_pem, algorithm, QSsl.EncodingFormat.Pem, QSsl.KeyType.PrivateKey)
        if not key.isNull():
            return cert, key
    raise ValueError(f"{key_path} does not hold an EC or RSA private key Qt can read")


def qt_fingerprint(cert: QSslCertificate) -> str:
    """SHA-256 fingerprint of a QSslCertificate (e.g. ``socket.peerCertificate()``)."""
    from PySide6.QtCore import QCryptographicHash

    if cert.isNull():
        raise ValueError("the certificate is empty (no TLS peer certificate yet?)")
    return _format_fingerprint(bytes(cert.digest(QCryptographicHash.Algorithm.Sha256).data()))
