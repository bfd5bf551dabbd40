"""Private key material of each algorithm MLAX uses: generation and raw serialisation.

What goes into an encrypted key file is the smallest form that regenerates the key:

* ed25519: the 32-byte seed (PyNaCl `SigningKey`);
* x25519: the 32-byte private scalar;
* mlkem768-x25519: the 64-byte ML-KEM-768 seed followed by the 32-byte X25519 key;
  its public form is the 1184-byte ML-KEM key followed by the 32-byte X25519 key;
* ecdsa-p256 (TLS only): PKCS#8 DER; its public form is the DER SubjectPublicKeyInfo.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from nacl.signing import SigningKey

from exchange.agency import KeyAlgorithm
from exchange.encoding import key_id
from exchange.envelope import DecryptionKey
from exchange.errors import KeystoreError

MLKEM_SEED_BYTES = 64
MLKEM768_PUBLIC_BYTES = 1184


class Algorithm(Enum):
    """Algorithms of private keys held in the keystore; values are their labels on disk."""

    ED25519 = "ed25519"
    X25519 = "x25519"
    MLKEM768_X25519 = "mlkem768-x25519"
    ECDSA_P256 = "ecdsa-p256"

    @property
    def published(self) -> KeyAlgorithm | None:
        """The directory's algorithm for this key, or None for keys never published (TLS)."""
        return next((a for a in KeyAlgorithm if a.label == self.value), None)


class Purpose(Enum):
    """What a key is for; bound into its key file so a key cannot be reused for another."""

    SIGNING = "signing"
    ENCRYPTION = "encryption"
    TLS = "tls"
    ADMIN = "admin"
    # The key of a node's officer CA, which signs officer credentials (node.services.officers).
    OFFICER_CA = "officer-ca"

    @property
    def noun(self) -> str:
        """How messages name such a key, after "a"."""
        return {
            Purpose.SIGNING: "signing key",
            Purpose.ENCRYPTION: "decryption key",
            Purpose.TLS: "TLS key",
            Purpose.ADMIN: "federation administrator key",
            Purpose.OFFICER_CA: "officer CA key",
        }[self]


@dataclass(frozen=True, repr=False)
class KeyMaterial:
    """One private key in raw form with its public key; `repr` never shows the secret."""

    algorithm: Algorithm
    secret: bytes
    public_key: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.algorithm.value, self.public_key)

    def __repr__(self) -> str:
        return f"KeyMaterial({self.algorithm.value}, {self.key_id})"

    @classmethod
    def generate(cls, algorithm: Algorithm) -> KeyMaterial:
        """A fresh random key of `algorithm`."""
        if algorithm is Algorithm.ED25519:
            return cls.from_secret(algorithm, bytes(SigningKey.generate()))
        if algorithm is Algorithm.X25519:
            return cls.from_secret(
                algorithm, x25519.X25519PrivateKey.generate().private_bytes_raw()
            )
        if algorithm is Algorithm.MLKEM768_X25519:
            seed = mlkem.MLKEM768PrivateKey.generate().private_bytes_raw()
            x_raw = x25519.X25519PrivateKey.generate().private_bytes_raw()
            return cls.from_secret(algorithm, seed + x_raw)
        der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls.from_secret(algorithm, der)

    @classmethod
    def from_secret(cls, algorithm: Algorithm, secret: bytes) -> KeyMaterial:
        """Rebuild a key from its raw secret and derive its public key; KeystoreError if bad."""
        try:
            public = _public_of(algorithm, secret)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeystoreError(f"The stored {algorithm.value} key is malformed.") from None
        return cls(algorithm, secret, public)

    # -- typed views for the code that uses the key -------------------------------------------

    def signing_key(self) -> SigningKey:
        self._expect(Algorithm.ED25519)
        return SigningKey(self.secret)

    def decryption_key(self) -> DecryptionKey:
        if self.algorithm is Algorithm.X25519:
            return x25519.X25519PrivateKey.from_private_bytes(self.secret)
        self._expect(Algorithm.MLKEM768_X25519)
        return hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(self.secret[:MLKEM_SEED_BYTES]),
            x25519.X25519PrivateKey.from_private_bytes(self.secret[MLKEM_SEED_BYTES:]),
        )

    def tls_key(self) -> ec.EllipticCurvePrivateKey:
        self._expect(Algorithm.ECDSA_P256)
        key = serialization.load_der_private_key(self.secret, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeystoreError("The stored TLS key is not an ECDSA key.")
        return key

    def _expect(self, algorithm: Algorithm) -> None:
        if self.algorithm is not algorithm:
            raise KeystoreError(
                f"Key {self.key_id} is {self.algorithm.value}, not {algorithm.value}."
            )


def _public_of(algorithm: Algorithm, secret: bytes) -> bytes:
    if algorithm is Algorithm.ED25519:
        return bytes(SigningKey(secret).verify_key)
    if algorithm is Algorithm.X25519:
        return x25519.X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    if algorithm is Algorithm.MLKEM768_X25519:
        if len(secret) != MLKEM_SEED_BYTES + 32:
            raise ValueError("wrong length")
        m_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(secret[:MLKEM_SEED_BYTES])
        x_key = x25519.X25519PrivateKey.from_private_bytes(secret[MLKEM_SEED_BYTES:])
        return m_key.public_key().public_bytes_raw() + x_key.public_key().public_bytes_raw()
    key = serialization.load_der_private_key(secret, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("not a P-256 key")
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
