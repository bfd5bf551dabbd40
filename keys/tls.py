"""The node's TLS certificate: self-signed, pinned by its key's fingerprint in the directory.

No certificate authority is involved: peers trust exactly the certificate the directory
publishes, so the certificate only has to carry the endpoint's name for hostname checks
and be usable for both ends of mutual TLS.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.errors import InvalidFieldError

# Peers whose clocks run a little behind must not see a brand-new certificate as not yet valid.
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(minutes=5)


_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME_RE = re.compile(rf"^(?=.{{1,253}}$){_DNS_LABEL}(?:\.{_DNS_LABEL})*$")


def endpoint_host(endpoint: str) -> str:
    """The host part of HOST:PORT (no IPv6 brackets); a DNS name in ASCII or an IP address."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidFieldError(f"Endpoint {endpoint!r} is not HOST:PORT.")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not DNS_NAME_RE.match(host):
            raise InvalidFieldError(
                f"Endpoint host {host!r} is neither an IP address nor a DNS name "
                "(write international names in their xn-- form)."
            ) from None
    return host


def _subject_alt_names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        names.append(x509.DNSName(host))
        loopback = host.lower() == "localhost"
    else:
        names.append(x509.IPAddress(ip))
        loopback = ip.is_loopback
    if loopback:
        # A loopback node is reached as localhost or by either loopback address.
        for extra in (
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ):
            if extra not in names:
                names.append(extra)
    return names


def self_signed_certificate(
    key: ec.EllipticCurvePrivateKey,
    *,
    agency_id: str,
    name: str,
    country: str,
    endpoint: str,
    not_before_ms: int,
    not_after_ms: int,
) -> bytes:
    """A PEM certificate for `key` naming the agency, with the endpoint host in its SAN."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, agency_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name[:64]),
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
        ]
    )
    start = datetime.datetime.fromtimestamp(not_before_ms / 1000, tz=datetime.UTC)
    end = datetime.datetime.fromtimestamp(not_after_ms / 1000, tz=datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(_subject_alt_names(endpoint_host(endpoint))),
            critical=False,
        )
        # Not a CA: gRPC (BoringSSL) accepts a self-signed leaf given as root_certificates,
        # and a member that could issue certificates could impersonate another member to
        # a peer that trusts every federation certificate at once.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certificate(pem: bytes) -> x509.Certificate:
    """Parse a PEM certificate; InvalidFieldError when it is not one."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise InvalidFieldError("The TLS certificate is not a valid PEM certificate.") from None


def certificate_spki(certificate_pem: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a PEM certificate."""
    return (
        load_certificate(certificate_pem)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def spki_sha256(certificate_pem: bytes) -> bytes:
    """The pin peers check: SHA-256 of the certificate's DER SubjectPublicKeyInfo."""
    return hashlib.sha256(certificate_spki(certificate_pem)).digest()


def certificate_not_after_ms(certificate_pem: bytes) -> int:
    """When the certificate expires, in unix milliseconds."""
    return int(load_certificate(certificate_pem).not_valid_after_utc.timestamp() * 1000)
