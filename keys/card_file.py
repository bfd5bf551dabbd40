"""The agency card as a file: the protobuf JSON of `mlax.v1.AgencyCard`.

This is what an agency hands the federation administrators to be listed. Reading one
also checks that the TLS fingerprint is that of the certificate it carries, so a card
cannot pin one key while showing peers another.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import json_format

from exchange._proto.mlax.v1 import directory_pb2 as pb
from exchange.agency import AgencyCard
from exchange.errors import InvalidFieldError, MalformedError
from keys.tls import spki_sha256

MAX_CARD_FILE_BYTES = 256 * 1024


def card_to_json(card: AgencyCard) -> str:
    """The card as protobuf JSON, one document ending in a newline."""
    return json_format.MessageToJson(card.to_wire(), indent=2) + "\n"


def card_from_json(text: str | bytes, source: str = "the agency card") -> AgencyCard:
    """Parse and validate a card; MalformedError or InvalidFieldError naming `source`."""
    if len(text) > MAX_CARD_FILE_BYTES:
        raise MalformedError(f"{source} is larger than an agency card can be.")
    try:
        msg = json_format.Parse(text, pb.AgencyCard())
    except (json_format.ParseError, UnicodeDecodeError) as e:
        # The parser's first line names the offending field; the rest lists every field.
        detail = str(e).splitlines()[0].rstrip(".")[:160] if str(e) else "unreadable"
        raise MalformedError(f"{source} is not an agency card ({detail}).") from None
    card = AgencyCard.from_wire(msg)
    check_tls_pin(card, source)
    return card


def check_tls_pin(card: AgencyCard, source: str = "the agency card") -> None:
    """Refuse a card whose TLS fingerprint is not that of its own certificate."""
    if spki_sha256(card.tls_certificate_pem) != card.tls_spki_sha256:
        raise InvalidFieldError(
            f"The TLS fingerprint in {source} does not match the certificate it carries."
        )
    nxt = card.next_tls_certificate_pem
    if nxt and spki_sha256(nxt) != card.next_tls_spki_sha256:
        raise InvalidFieldError(
            f"The next TLS fingerprint in {source} does not match the certificate it carries."
        )


def read_card_file(path: Path) -> AgencyCard:
    """Read and validate the card file `path`."""
    with path.open("rb") as f:
        data = f.read(MAX_CARD_FILE_BYTES + 1)
    return card_from_json(data, str(path))
