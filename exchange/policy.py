"""Who may read, forward and download what: the one rule behind handling codes.

Pure: plain values in, a `Decision` out. The node asks it on every path that shows or
passes on content (a message's content, a case's form and step details, forwarding a
note, downloading an evidence file) and ledgers every refusal with its reason code.

Officers are `OfficerId(agency, account)` and are only ever compared whole: an account
name means nothing without its agency. The wire keeps bare account names in a header's
`restricted_to`; they name officers of the header's **recipient** agency. On the
sending node the item is restricted to its author (the officer who submitted the
message, created the case or uploaded the file); on the receiving node to the officers
named. That author exemption is the only one.

An evidence file is at least as restricted as its case (`evidence_handling`): each node
merges the file's own handling with its copy of the case's, whatever the sender put in
the file's header.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum

from exchange.envelope import HandlingCode, Header, handling_from_wire
from exchange.errors import InvalidFieldError

RESTRICTED = HandlingCode.RESTRICTED_TO_NAMED_OFFICERS


# Roles that may see content at all; auditors and admins see metadata only.
class Role(StrEnum):
    """An officer account's role on its node: the one definition every layer uses."""

    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"


CONTENT_ROLES = frozenset({Role.OFFICER, Role.SUPERVISOR})


@dataclass(frozen=True, order=True)
class OfficerId:
    """An officer: an account of one agency. Two agencies may both have a `benoit`."""

    agency: str
    account: str

    def __str__(self) -> str:
        return f"{self.account}@{self.agency}"


class Reason(Enum):
    """Why access was refused: the `reason` field of the ledgered refusal."""

    ROLE = "role_sees_no_content"
    RESTRICTED = "restricted_to_named_officers"
    NO_ONWARD = "no_onward_transmission"
    NOT_NAMED_AT_RECIPIENT = "named_officers_not_at_recipient"


@dataclass(frozen=True)
class Decision:
    """Allowed, or refused for `reason`."""

    reason: Reason | None = None

    @property
    def allowed(self) -> bool:
        return self.reason is None

    def explain(self, subject: str) -> str:
        """The one-sentence refusal for an officer; `subject` is like "Message <id>"."""
        if self.reason is Reason.ROLE:
            return "Auditors see metadata and evidence, not content."
        if self.reason is Reason.RESTRICTED:
            return f"{subject} is restricted to named officers."
        if self.reason is Reason.NO_ONWARD:
            return (
                f"{subject} carries the handling code no-onward-transmission: "
                "it cannot be forwarded."
            )
        if self.reason is Reason.NOT_NAMED_AT_RECIPIENT:
            return (
                f"{subject} is restricted to named officers of this agency: it cannot be "
                "forwarded to another agency."
            )
        return f"{subject} may be read."


ALLOWED = Decision()


@dataclass(frozen=True)
class Handling:
    """The handling codes of one item on one node, and who may read it if restricted.

    `named` are the officers a restriction names (empty unless `restricted`); `authors`
    the officers who wrote the item on this node (or its parts, once merged).
    """

    codes: frozenset[HandlingCode] = frozenset()
    named: frozenset[OfficerId] = frozenset()
    authors: frozenset[OfficerId] = frozenset()

    @classmethod
    def of(
        cls,
        codes: Iterable[HandlingCode],
        named: Iterable[str],
        *,
        recipient: str,
        author: OfficerId | None = None,
    ) -> Handling:
        """An item addressed to `recipient`: the names it carries are `recipient`'s officers."""
        code_set = frozenset(codes)
        officers = (
            frozenset(OfficerId(recipient, n) for n in named if n)
            if RESTRICTED in code_set
            else frozenset()
        )
        return cls(code_set, officers, frozenset({author}) if author is not None else frozenset())

    @classmethod
    def of_header(cls, header: Header, author: str | None = None) -> Handling:
        """A message as its header states it; `author` is the submitting officer's account,
        known on the sending node only."""
        return cls.of(
            header.handling_codes,
            header.restricted_to,
            recipient=header.recipient,
            author=OfficerId(header.sender, author) if author else None,
        )

    @property
    def restricted(self) -> bool:
        return RESTRICTED in self.codes

    def merged(self, *others: Handling) -> Handling:
        """Every code of every part; restricted if any part is, and then readable by
        whom the restricted parts name or were written by (an unrestricted part's author
        gains nothing over a restricted one)."""
        parts = (self, *others)
        restricting = [p for p in parts if p.restricted]
        return Handling(
            frozenset().union(*(p.codes for p in parts)),
            frozenset().union(*(p.named for p in restricting)),
            frozenset().union(*(p.authors for p in restricting)),
        )

    def wire(self, recipient: str) -> tuple[tuple[HandlingCode, ...], tuple[str, ...]]:
        """The header codes and `restricted_to` of a copy sent to `recipient`.

        Only `recipient`'s named officers can be named on the wire. If it has none, the
        restriction code is left out too (a header may not restrict to nobody): for
        evidence the recipient's own copy of the case restricts the file there.
        """
        names = tuple(sorted(o.account for o in self.named if o.agency == recipient))
        codes = tuple(c for c in HandlingCode if c in self.codes and (c is not RESTRICTED or names))
        return codes, names


def may_read(officer: OfficerId, role: str, item: Handling) -> Decision:
    """Whether `officer` (with `role`) may see the content of `item`."""
    if role not in CONTENT_ROLES:
        return Decision(Reason.ROLE)
    if item.restricted and officer not in item.named and officer not in item.authors:
        return Decision(Reason.RESTRICTED)
    return ALLOWED


def may_act(officer: OfficerId, role: str, item: Handling) -> Decision:
    """Whether `officer` may act on `item` (take a case's next step, add evidence to it):
    only who may read it. A restriction hides an item's content from an officer, and so
    does it its handling: a step or a file added by someone who cannot see the case is
    taken blind. Checked for case steps, evidence uploads and victim-identification
    disclosures. Two supervisor acts concern the record, not its content, and are not
    checked: the four-eyes approval of a draft its named officers alone may read, and a
    legal hold (docs/operators.md 10.2, 10.9; ADR 0017)."""
    return may_read(officer, role, item)


def may_forward(officer: OfficerId, role: str, item: Handling, recipient: str) -> Decision:
    """Whether `officer` may pass `item`'s content on to the agency `recipient`.

    Forwarding shows the content to `recipient`'s officers, so a restricted item can go
    only where it names someone; the item's own codes travel with the copy
    (`item.wire(recipient)`).
    """
    if role not in CONTENT_ROLES:
        return Decision(Reason.ROLE)
    if HandlingCode.NO_ONWARD_TRANSMISSION in item.codes:
        return Decision(Reason.NO_ONWARD)
    read = may_read(officer, role, item)
    if not read.allowed:
        return read
    if item.restricted and not any(o.agency == recipient for o in item.named):
        return Decision(Reason.NOT_NAMED_AT_RECIPIENT)
    return ALLOWED


def evidence_handling(file: Handling, case: Handling) -> Handling:
    """An evidence file's handling on a node: its own, merged with its case's there."""
    return file.merged(case)


def may_download(officer: OfficerId, role: str, file: Handling, case: Handling) -> Decision:
    """Whether `officer` may download an evidence file of a case."""
    return may_read(officer, role, evidence_handling(file, case))


def reply_handling(
    original_codes: Iterable[HandlingCode],
    requested_codes: Iterable[int],
    requested_names: Sequence[str],
    peer: str,
) -> tuple[HandlingCode, ...]:
    """The handling codes of a reply to a message that carried `original_codes`.

    A reply may quote what it answers, so it keeps at least the original's codes; the
    officer's `requested_codes` (wire values) are added, never in place of them. A reply
    to a message restricted to named officers must itself name officers of `peer` (the
    agency it goes to, `requested_names`): the node cannot name them by itself.
    """
    original = frozenset(original_codes)
    names = [n for n in requested_names if n]
    if RESTRICTED in original and not names:
        raise InvalidFieldError(
            "The message this answers is restricted to named officers: name the officers "
            f"of {peer[:64]} who may read the reply."
        )
    requested = frozenset(handling_from_wire(requested_codes, names, "a reply"))
    codes = original | requested
    return tuple(c for c in HandlingCode if c in codes)
