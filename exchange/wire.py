"""Strict parsing of wire bytes into generated protobuf messages.

Protobuf parsers are lenient: they accept unknown fields and repeated scalars. Signed
structures here are parsed strictly so that one meaning has one encoding in version 1:
bytes with fields this version does not define are refused rather than silently kept.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import message as _message
from google.protobuf import unknown_fields

from exchange.errors import MalformedError, OversizedError

M = TypeVar("M", bound=_message.Message)


def _has_unknown_fields(msg: _message.Message) -> bool:
    if len(unknown_fields.UnknownFieldSet(msg)):
        return True
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.is_repeated:
            if any(_has_unknown_fields(v) for v in value):
                return True
        elif _has_unknown_fields(value):
            return True
    return False


def parse(cls: type[M], data: bytes, what: str, max_size: int, canonical: bool = False) -> M:
    """Parse `data` as `cls`, refusing oversize, corrupt and unknown-field input.

    With `canonical`, also refuse any encoding other than the deterministic one (fields
    in number order, each once, defaults omitted): signed structures must mean the same
    to every parser, and protobuf parsers disagree on, say, a repeated singular field.
    """
    if len(data) > max_size:
        raise OversizedError(f"The {what} is {len(data)} bytes; the limit is {max_size}.")
    try:
        msg = cls.FromString(data)
    except _message.DecodeError:
        raise MalformedError(f"The {what} is not a valid protobuf encoding.") from None
    if _has_unknown_fields(msg):
        raise MalformedError(f"The {what} has fields protocol version 1 does not define.")
    if canonical and msg.SerializeToString(deterministic=True) != data:
        raise MalformedError(f"The {what} is not in canonical protobuf encoding.")
    return msg
