"""exchange/errors.py: typed statuses and the error categories."""

from __future__ import annotations

import json

import grpc
import pytest

from exchange import errors
from exchange.errors import (
    AuthError,
    ConflictError,
    InputError,
    MissingError,
    MlaxError,
    PolicyError,
    RetryLaterError,
    Status,
)

SIZE, DUPLICATE = "RESOURCE_EXHAUSTED", "ALREADY_EXISTS"
CATEGORIES = (InputError, AuthError, PolicyError, ConflictError, RetryLaterError, MissingError)


def _subclasses(cls: type[MlaxError]) -> list[type[MlaxError]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def test_status_names_are_grpcs() -> None:
    assert [s.value for s in Status] == [c.name for c in grpc.StatusCode]
    assert [s.name for s in Status] == [s.value for s in Status]


@pytest.mark.parametrize("status", list(Status))
def test_a_status_works_where_its_name_did(status: Status) -> None:
    assert grpc.StatusCode[status] is grpc.StatusCode.__members__.get(status)
    assert status == status.value
    assert f"{status}" == status.value
    assert json.dumps({"status": status}) == f'{{"status": "{status.value}"}}'


@pytest.mark.parametrize(
    ("category", "default", "allowed"),
    [
        (
            InputError,
            "INVALID_ARGUMENT",
            {"INVALID_ARGUMENT", "OUT_OF_RANGE", "RESOURCE_EXHAUSTED"},
        ),
        (AuthError, "UNAUTHENTICATED", {"UNAUTHENTICATED", "PERMISSION_DENIED"}),
        (PolicyError, "PERMISSION_DENIED", {"PERMISSION_DENIED"}),
        (
            ConflictError,
            "FAILED_PRECONDITION",
            {"FAILED_PRECONDITION", "ABORTED", "ALREADY_EXISTS"},
        ),
        (RetryLaterError, "UNAVAILABLE", {"UNAVAILABLE"}),
        (MissingError, "NOT_FOUND", {"NOT_FOUND"}),
    ],
)
def test_a_category_carries_its_default_status(
    category: type[MlaxError], default: str, allowed: set[str]
) -> None:
    class PlainError(category):  # type: ignore[misc, valid-type]
        pass

    assert PlainError.status is Status(default)
    assert PlainError("x").status == default
    assert category.statuses == {Status(s) for s in allowed}


def test_the_base_status_is_unchanged() -> None:
    assert MlaxError.status is Status.INVALID_ARGUMENT


def test_every_error_of_the_module_is_in_a_category_that_allows_its_status() -> None:
    for cls in _subclasses(MlaxError):
        if cls.__module__ != errors.__name__:
            continue
        assert isinstance(cls.status, Status), cls
        categories = [c for c in CATEGORIES if issubclass(cls, c)]
        assert categories, f"{cls.__name__} is in no category"
        assert any(cls.status in c.statuses for c in categories), cls


def test_a_status_given_as_a_name_becomes_the_enum() -> None:
    class NamedError(MlaxError):
        status = "NOT_FOUND"  # type: ignore[assignment]

    assert NamedError.status is Status.NOT_FOUND


def test_an_unknown_status_name_is_refused_at_definition() -> None:
    with pytest.raises(ValueError, match="NOPE"):

        class BadError(MlaxError):
            status = "NOPE"  # type: ignore[assignment]


def test_a_status_outside_the_category_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="not of its category"):

        class BadError(RetryLaterError):
            status = Status.INVALID_ARGUMENT


def test_passphrase_errors_are_keystore_and_auth_errors() -> None:
    e = errors.PassphraseError("x")
    assert isinstance(e, errors.KeystoreError)
    assert isinstance(e, AuthError)
    assert e.status is Status.PERMISSION_DENIED
