"""The one exception hierarchy of MLAX.

Every error names the gRPC status a node answers with (`status`, a `Status`: the
grpc.StatusCode member name as a `StrEnum`, so this package does not depend on grpc and
`grpc.StatusCode[e.status]` still works) and carries one sentence a person can act on.
Callers catch `MlaxError`; tests assert the subclass.

The errors are grouped by category, each a base class carrying the category's default
status and the statuses its members may answer with:

| category          | default status        | members may also answer        |
|-------------------|-----------------------|--------------------------------|
| `InputError`      | `INVALID_ARGUMENT`    | `OUT_OF_RANGE`, `RESOURCE_EXHAUSTED` (size) |
| `AuthError`       | `UNAUTHENTICATED`     | `PERMISSION_DENIED`            |
| `PolicyError`     | `PERMISSION_DENIED`   |                                |
| `ConflictError`   | `FAILED_PRECONDITION` | `ABORTED`, `ALREADY_EXISTS`    |
| `RetryLaterError` | `UNAVAILABLE`         |                                |
| `MissingError`    | `NOT_FOUND`           |                                |

A subclass whose status its categories do not allow is refused when it is defined.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class Status(StrEnum):
    """A gRPC status, by the name of its grpc.StatusCode member."""

    OK = "OK"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"
    DATA_LOSS = "DATA_LOSS"
    UNAUTHENTICATED = "UNAUTHENTICATED"


class MlaxError(Exception):
    """Base of every error MLAX raises on purpose."""

    status: Status = Status.INVALID_ARGUMENT
    # Set on the category classes only: the statuses their subclasses may answer with.
    statuses: ClassVar[frozenset[Status]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A plain string (a status name) is taken as its Status; an unknown name fails here.
        cls.status = Status(cls.status)
        allowed = [s for c in cls.__mro__ if (s := c.__dict__.get("statuses"))]
        if allowed and not any(cls.status in s for s in allowed):
            raise TypeError(f"{cls.__qualname__}: status {cls.status} is not of its category")

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- categories ----------------------------------------------------------------------------


class InputError(MlaxError):
    """Category: input that is malformed, out of range or too large. Resending it is useless."""

    status = Status.INVALID_ARGUMENT
    statuses = frozenset({Status.INVALID_ARGUMENT, Status.OUT_OF_RANGE, Status.RESOURCE_EXHAUSTED})


class AuthError(MlaxError):
    """Category: a party, key, signature or credential that does not authenticate."""

    status = Status.UNAUTHENTICATED
    statuses = frozenset({Status.UNAUTHENTICATED, Status.PERMISSION_DENIED})


class PolicyError(MlaxError):
    """Category: an authenticated party the rules do not allow to do this."""

    status = Status.PERMISSION_DENIED
    statuses = frozenset({Status.PERMISSION_DENIED})


class ConflictError(MlaxError):
    """Category: a request that does not fit the state it meets (stale, duplicate, expired)."""

    status = Status.FAILED_PRECONDITION
    statuses = frozenset({Status.FAILED_PRECONDITION, Status.ABORTED, Status.ALREADY_EXISTS})


class RetryLaterError(MlaxError):
    """Category: nothing wrong with the request, but it cannot succeed yet; retry later."""

    status = Status.UNAVAILABLE
    statuses = frozenset({Status.UNAVAILABLE})


class MissingError(MlaxError):
    """Category: what the request names does not exist here."""

    status = Status.NOT_FOUND
    statuses = frozenset({Status.NOT_FOUND})


class OutOfRangeError(InputError):
    """A number past the range the call accepts (a ledger index, a size, a version)."""

    status = Status.OUT_OF_RANGE


class NotYetError(ConflictError):
    """Something that exists later, not yet (an entry no signed checkpoint covers yet)."""

    status = Status.FAILED_PRECONDITION


# --- input shape -------------------------------------------------------------------------


class MalformedError(InputError):
    """Bytes that do not parse as the expected structure."""


class OversizedError(InputError):
    """A field or message beyond its configured limit."""

    status = Status.RESOURCE_EXHAUSTED


class InvalidFieldError(InputError):
    """A field that parses but has a value the protocol forbids."""


# --- envelope opening, in the order `open_envelope` checks ---------------------------------


class UnknownSenderError(AuthError):
    """The sender agency is not a member of the trusted directory."""


class UnknownKeyError(AuthError):
    """A key id the directory does not list for that agency."""


class KeyNotValidError(AuthError):
    """A key used outside its validity window."""


class RevokedKeyError(AuthError):
    """A key the directory lists as revoked."""


class OuterSignatureError(AuthError):
    """The outer signature over header and ciphertext does not verify."""


class WrongRecipientError(ConflictError):
    """The envelope is addressed to another agency or another key of ours."""


class ExpiredEnvelopeError(ConflictError):
    """The envelope's expiry has passed, or it claims to come from the future."""


class ReplayError(ConflictError):
    """A message id that was already accepted."""

    status = Status.ALREADY_EXISTS


class DecryptionError(AuthError):
    """The HPKE ciphertext does not decrypt with our key and this header."""


class InnerSignatureError(AuthError):
    """The inner (non-repudiation) signature over header and body does not verify."""


class ReceiptError(AuthError):
    """A delivery receipt that does not match its envelope or does not verify."""


# --- directory -----------------------------------------------------------------------------


class DirectoryError(ConflictError):
    """Base of directory verification failures."""


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


class ChainGapError(DirectoryError):
    """A chain of directory versions that skips a version."""


# --- keys ----------------------------------------------------------------------------------


class KeystoreError(ConflictError):
    """A key file that is missing, unreadable or not of the expected kind."""


class PassphraseError(KeystoreError, AuthError):
    """The passphrase does not decrypt the key file."""

    status = Status.PERMISSION_DENIED
