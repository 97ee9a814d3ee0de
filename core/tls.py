"""TLS for the API and Flight SQL: the configured certificate files, checked before anything serves, and a
local certificate authority for development (`flasktrack up --tls`).

Checks raise ValueError with one line naming the file, so a wrong path, an unreadable file or a key that
belongs to another certificate is a configuration error at start, not a failed handshake later.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# A development server certificate is issued again when it has less than this left, or misses a host name.
_RENEW_BEFORE = dt.timedelta(days=30)
_SERVER_VALIDITY = dt.timedelta(days=397)
_CA_VALIDITY = dt.timedelta(days=10 * 365)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None


def load_certificates(path: Path) -> list[x509.Certificate]:
    """The PEM certificate chain in `path` (the server's own certificate first)."""
    data = _read(path)
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"{path}: not a PEM certificate") from None
    return chain


def load_private_key(path: Path) -> PrivateKeyTypes:
    data = _read(path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{path}: not an unencrypted PEM private key") from None


def check_key_pair(cert_file: Path, key_file: Path) -> None:
    """ValueError unless `key_file` holds the private key of the first certificate in `cert_file`."""
    cert = load_certificates(cert_file)[0]
    key = load_private_key(key_file)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ):
        raise ValueError(f"{key_file}: not the private key of the certificate in {cert_file}")


@dataclass(frozen=True)
class ServerCertificate:
    """Certificate chain and key, PEM, as servers take them."""

    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_files(cls, cert_file: Path, key_file: Path) -> ServerCertificate:
        check_key_pair(cert_file, key_file)
        return cls(_read(cert_file), _read(key_file))


# ---------------------------------------------------------------- development CA


@dataclass(frozen=True)
class DevCertificates:
    ca_file: Path  # what clients trust
    cert_file: Path
    key_file: Path


def serving_names(*hosts: str) -> list[str]:
    """The names a development certificate covers: the loopback names, this machine's name, and the hosts the
    services listen on (a wildcard address stands for every local name)."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    names += [h for h in hosts if h not in ("0.0.0.0", "::", "")]  # noqa: S104 - a listen address, not bound here
    return list(dict.fromkeys(names))


def ensure_dev_certificates(directory: Path, names: Iterable[str]) -> DevCertificates:
    """A local CA and a server certificate under `directory`, created once and reused: the server certificate
    is issued again (by the same CA, so clients keep trusting it) when it expires soon or misses a name."""
    directory.mkdir(parents=True, exist_ok=True)
    certs = DevCertificates(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    ca_key_file = directory / "ca-key.pem"
    wanted = list(dict.fromkeys(names))
    if not (certs.ca_file.exists() and ca_key_file.exists()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        _write_private(ca_key_file, ca_key)
        certs.ca_file.write_bytes(_issue_ca(ca_key).public_bytes(serialization.Encoding.PEM))
        certs.cert_file.unlink(missing_ok=True)
    if not _server_certificate_fits(certs, wanted):
        issuer_key = load_private_key(ca_key_file)
        if not isinstance(issuer_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_file}: not the development CA's key")
        ca = load_certificates(certs.ca_file)[0]
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(certs.key_file, key)
        issued = _issue_server(ca, issuer_key, key, wanted)
        certs.cert_file.write_bytes(issued.public_bytes(serialization.Encoding.PEM))
    return certs


def _server_certificate_fits(certs: DevCertificates, names: list[str]) -> bool:
    try:
        check_key_pair(certs.cert_file, certs.key_file)
        cert = load_certificates(certs.cert_file)[0]
    except ValueError:
        return False
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < _RENEW_BEFORE:
        return False
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    covered = {str(n) for n in sans.get_values_for_type(x509.DNSName)}
    covered |= {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return all(str(_as_ip(n) or n) in covered for n in names)


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.unlink(missing_ok=True)  # a fresh file gets mode 0600 at creation, never wider in between
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _as_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _builder(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey,
             validity: dt.timedelta) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + validity)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))


def _issue_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Flask Track development"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"Flask Track development CA ({socket.gethostname()})")])
    return (_builder(name, name, key.public_key(), _CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))


def _issue_server(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey,
                  names: list[str]) -> x509.Certificate:
    sans: list[x509.GeneralName] = []
    for n in names:
        ip = _as_ip(n)
        sans.append(x509.IPAddress(ip) if ip is not None else x509.DNSName(n))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (_builder(subject, ca.subject, key.public_key(), _SERVER_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
