"""The one exception hierarchy of MLAX.

Every error names the gRPC status a node answers with (`status`, a grpc.StatusCode
name, kept as a string so this package does not depend on grpc) and carries one
sentence a person can act on. Callers catch `MlaxError`; tests assert the subclass.
"""

from __future__ import annotations


class MlaxError(Exception):
    """Base of every error MLAX raises on purpose."""

    status = "INVALID_ARGUMENT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- input shape -------------------------------------------------------------------------


class MalformedError(MlaxError):
    """Bytes that do not parse as the expected structure."""


class OversizedError(MlaxError):
    """A field or message beyond its configured limit."""

    status = "RESOURCE_EXHAUSTED"


class InvalidFieldError(MlaxError):
    """A field that parses but has a value the protocol forbids."""


# --- envelope opening, in the order `open_envelope` checks ---------------------------------


class UnknownSenderError(MlaxError):
    """The sender agency is not a member of the trusted directory."""

    status = "UNAUTHENTICATED"


class UnknownKeyError(MlaxError):
    """A key id the directory does not list for that agency."""

    status = "UNAUTHENTICATED"


class KeyNotValidError(MlaxError):
    """A key used outside its validity window."""

    status = "UNAUTHENTICATED"


class RevokedKeyError(MlaxError):
    """A key the directory lists as revoked."""

    status = "UNAUTHENTICATED"


class OuterSignatureError(MlaxError):
    """The outer signature over header and ciphertext does not verify."""

    status = "UNAUTHENTICATED"


class WrongRecipientError(MlaxError):
    """The envelope is addressed to another agency or another key of ours."""

    status = "FAILED_PRECONDITION"


class ExpiredEnvelopeError(MlaxError):
    """The envelope's expiry has passed, or it claims to come from the future."""

    status = "FAILED_PRECONDITION"


class ReplayError(MlaxError):
    """A message id that was already accepted."""

    status = "ALREADY_EXISTS"


class DecryptionError(MlaxError):
    """The HPKE ciphertext does not decrypt with our key and this header."""

    status = "UNAUTHENTICATED"


class InnerSignatureError(MlaxError):
    """The inner (non-repudiation) signature over header and body does not verify."""

    status = "UNAUTHENTICATED"


class ReceiptError(MlaxError):
    """A delivery receipt that does not match its envelope or does not verify."""

    status = "UNAUTHENTICATED"


# --- directory -----------------------------------------------------------------------------


class DirectoryError(MlaxError):
    """Base of directory verification failures."""

    status = "FAILED_PRECONDITION"


class ThresholdError(DirectoryError):
    """Fewer valid administrator signatures than the threshold requires."""


class DuplicateSignatureError(DirectoryError):
    """The same administrator signed twice."""


class UnknownSignerError(DirectoryError):
    """A signature by a key that is not a federation administrator."""


class BadSignatureError(DirectoryError):
    """A signature by a known administrator that does not verify."""


class ExpiredDirectoryError(DirectoryError):
    """The directory's expiry has passed."""


class RollbackError(DirectoryError):
    """A directory version not newer than the one already trusted."""


class FederationMismatchError(DirectoryError):
    """A directory of another federation than the trusted one."""


# --- keys ----------------------------------------------------------------------------------


class KeystoreError(MlaxError):
    """A key file that is missing, unreadable or not of the expected kind."""

    status = "FAILED_PRECONDITION"


class PassphraseError(KeystoreError):
    """The passphrase does not decrypt the key file."""

    status = "PERMISSION_DENIED"
