"""Errors of reading a ledger export: the bytes are not an export stream at all.

Tampering found in a well-formed export is not an error: `verify_export` reports it as a
`Problem` with the first bad index. These errors mean there is nothing to report on.
"""

from __future__ import annotations

from exchange.errors import MalformedError


class MalformedExportError(MalformedError):
    """A truncated, oversized, garbled or out-of-order ledger export stream."""
