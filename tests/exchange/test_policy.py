"""exchange.policy: who may read, forward and download, with qualified officer identities."""

from __future__ import annotations

import itertools

import pytest
from factories import SimAgency
from hypothesis import given
from hypothesis import strategies as st

from exchange.encoding import now_ms
from exchange.envelope import HandlingCode, Header, MessageType, seal
from exchange.policy import (
    ALLOWED,
    CONTENT_ROLES,
    Decision,
    Handling,
    OfficerId,
    Reason,
    evidence_handling,
    may_download,
    may_forward,
    may_read,
)

R, NO, NE = (
    HandlingCode.RESTRICTED_TO_NAMED_OFFICERS,
    HandlingCode.NO_ONWARD_TRANSMISSION,
    HandlingCode.NO_EVIDENTIAL_USE_WITHOUT_CONSENT,
)
GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"


def officer(agency: str, account: str) -> OfficerId:
    return OfficerId(agency, account)


# -- identities ------------------------------------------------------------------------------


def test_an_officer_is_an_agency_and_an_account() -> None:
    assert officer(GB, "benoit") != officer(FR, "benoit")
    assert officer(GB, "benoit") == officer(GB, "benoit")
    assert str(officer(FR, "benoit")) == "benoit@FR-OCRTEH"
    with pytest.raises(AttributeError):
        officer(GB, "benoit").account = "x"  # type: ignore[misc]


# -- messages: names are the recipient's officers, the author reads on the sending node ------


def _note_from_gb_to_fr(named: tuple[str, ...], author: str | None) -> Handling:
    return Handling.of((R,), named, recipient=FR, author=officer(GB, author) if author else None)


def test_the_recipients_named_officer_reads_and_no_one_else_there() -> None:
    note = _note_from_gb_to_fr(("benoit",), None)
    assert may_read(officer(FR, "benoit"), "officer", note).allowed
    refused = may_read(officer(FR, "claire"), "supervisor", note)
    assert refused == Decision(Reason.RESTRICTED)
    assert not refused.allowed


def test_a_namesake_at_the_sending_agency_does_not_read_the_outbound_copy() -> None:
    """Defect 4: GB's own benoit read a note GB restricted to FR's benoit."""
    note = _note_from_gb_to_fr(("benoit",), "alice")
    assert may_read(officer(GB, "benoit"), "officer", note).reason is Reason.RESTRICTED
    assert may_read(officer(GB, "alice"), "officer", note).allowed
    # The author exemption is the author's own agency only.
    assert may_read(officer(FR, "alice"), "officer", note).reason is Reason.RESTRICTED


def test_of_header_qualifies_names_with_the_recipient_and_the_author_with_the_sender(
    sender: SimAgency, receiver: SimAgency
) -> None:
    env = seal(
        sender.sender(),
        receiver.card,
        b"body",
        MessageType.NOTE,
        now_ms=now_ms(),
        handling_codes=(R, NO),
        restricted_to=("benoit", "dupont"),
    )
    header = Header.from_bytes(env.header)
    outbound = Handling.of_header(header, "alice")
    assert outbound.codes == {R, NO}
    assert outbound.named == {
        officer(receiver.agency_id, "benoit"),
        officer(receiver.agency_id, "dupont"),
    }
    assert outbound.authors == {officer(sender.agency_id, "alice")}
    assert Handling.of_header(header).authors == frozenset()


def test_names_without_the_restriction_code_restrict_nothing() -> None:
    loose = Handling.of((NE,), ("benoit",), recipient=FR)
    assert not loose.restricted
    assert loose.named == frozenset()
    assert may_read(officer(FR, "anyone"), "officer", loose) is ALLOWED


@pytest.mark.parametrize("role", ["auditor", "admin", ""])
def test_roles_without_content_are_refused_even_unrestricted(role: str) -> None:
    decision = may_read(officer(FR, "x"), role, Handling())
    assert decision.reason is Reason.ROLE
    assert "Auditors" in decision.explain("Message m")
    assert may_forward(officer(FR, "x"), role, Handling(), NG).reason is Reason.ROLE


def test_content_roles() -> None:
    assert {"officer", "supervisor"} == CONTENT_ROLES
    for role in CONTENT_ROLES:
        assert may_read(officer(FR, "x"), role, Handling()).allowed


# -- forwarding ------------------------------------------------------------------------------


def test_no_onward_transmission_refuses_everyone() -> None:
    note = Handling.of((NO,), (), recipient=FR)
    decision = may_forward(officer(FR, "benoit"), "officer", note, NG)
    assert decision.reason is Reason.NO_ONWARD
    assert "no-onward-transmission" in decision.explain("Message m")


def test_a_restricted_note_is_not_forwarded_by_an_officer_not_named() -> None:
    note = _note_from_gb_to_fr(("benoit",), None)
    assert may_forward(officer(FR, "claire"), "officer", note, NG).reason is Reason.RESTRICTED
    # Nor by the namesake at the third agency, whatever name it bears.
    assert may_forward(officer(NG, "benoit"), "officer", note, GB).reason is Reason.RESTRICTED


def test_a_restricted_note_does_not_leave_its_named_officers_agency() -> None:
    """The names are FR's officers: no officer of NG is named, so NG may not see it."""
    note = _note_from_gb_to_fr(("benoit",), None)
    decision = may_forward(officer(FR, "benoit"), "officer", note, NG)
    assert decision.reason is Reason.NOT_NAMED_AT_RECIPIENT
    assert "cannot be forwarded" in decision.explain("Message m")


def test_an_unrestricted_note_forwards_with_its_other_codes() -> None:
    note = Handling.of((NE,), (), recipient=FR)
    assert may_forward(officer(FR, "claire"), "officer", note, NG) is ALLOWED
    assert note.wire(NG) == ((NE,), ())


# -- cases and evidence ------------------------------------------------------------------------


def _case(
    named: tuple[str, ...], *, restricted: bool = True, creator: str | None = "alice"
) -> Handling:
    """A case GB (requesting, created by `creator`) submitted to FR."""
    return Handling.of(
        (R,) if restricted else (),
        named,
        recipient=FR,
        author=officer(GB, creator) if creator else None,
    )


def test_evidence_without_codes_is_as_restricted_as_its_case() -> None:
    """Defect 11: a peer omits the codes; the local case still restricts the file."""
    case_at_fr = _case(("benoit",), creator=None)
    file_from_gb = Handling.of((), (), recipient=FR)
    assert may_download(officer(FR, "benoit"), "officer", file_from_gb, case_at_fr).allowed
    assert (
        may_download(officer(FR, "claire"), "officer", file_from_gb, case_at_fr).reason
        is Reason.RESTRICTED
    )


def test_evidence_of_a_restricted_case_on_the_requesting_node_is_for_its_creator() -> None:
    case_at_gb = _case(("benoit",))
    file_from_fr = Handling.of((), (), recipient=GB)
    assert may_download(officer(GB, "alice"), "officer", file_from_fr, case_at_gb).allowed
    for other in ("benoit", "bob"):
        assert not may_download(officer(GB, other), "officer", file_from_fr, case_at_gb).allowed


def test_a_files_own_restriction_adds_its_named_officers_to_the_cases() -> None:
    case_at_fr = _case(("benoit",), creator=None)
    file_from_gb = Handling.of((R,), ("claire",), recipient=FR)
    merged = evidence_handling(file_from_gb, case_at_fr)
    assert merged.named == {officer(FR, "benoit"), officer(FR, "claire")}
    assert not may_download(officer(FR, "dupont"), "officer", file_from_gb, case_at_fr).allowed


def test_an_unrestricted_parts_author_gains_nothing_over_a_restricted_part() -> None:
    # The case's creator does not read a file the peer restricted to someone else...
    case_at_gb = _case((), restricted=False)
    file_from_fr = Handling.of((R,), ("dave",), recipient=GB)
    assert not may_download(officer(GB, "alice"), "officer", file_from_fr, case_at_gb).allowed
    assert may_download(officer(GB, "dave"), "officer", file_from_fr, case_at_gb).allowed
    # ...and an uploader who may not read a restricted case does not read its evidence back.
    case_at_fr = _case(("benoit",), creator=None)
    upload = Handling.of((), (), recipient=GB, author=officer(FR, "claire"))
    assert not may_download(officer(FR, "claire"), "officer", upload, case_at_fr).allowed


def test_an_uploader_reads_a_file_they_restricted() -> None:
    upload = Handling.of((R,), ("benoit",), recipient=FR, author=officer(GB, "bob"))
    assert may_download(officer(GB, "bob"), "officer", upload, _case((), restricted=False)).allowed
    assert not may_download(
        officer(GB, "benoit"), "officer", upload, _case((), restricted=False)
    ).allowed


def test_wire_names_only_the_recipients_officers() -> None:
    merged = evidence_handling(
        Handling.of((NO,), (), recipient=FR, author=officer(GB, "alice")), _case(("benoit",))
    )
    assert merged.wire(FR) == ((NO, R), ("benoit",))
    # Back to GB, FR's named officers cannot be named: the code is left out, GB's own
    # copy of the case restricts the file there.
    case_at_fr = _case(("benoit",), creator=None)
    upload_at_fr = Handling.of((), (), recipient=GB, author=officer(FR, "benoit"))
    assert evidence_handling(upload_at_fr, case_at_fr).wire(GB) == ((), ())


# -- properties ------------------------------------------------------------------------------

agencies = st.sampled_from([GB, FR, NG])
accounts = st.sampled_from(["benoit", "alice", "claire"])
officers = st.builds(OfficerId, agencies, accounts)
codes = st.sets(st.sampled_from(list(HandlingCode)))
handlings = st.builds(
    Handling.of,
    codes,
    st.lists(accounts, max_size=3),
    recipient=agencies,
    author=st.none() | officers,
)


@given(officers, handlings, handlings)
def test_evidence_is_never_less_restricted_than_its_case(
    who: OfficerId, file: Handling, case: Handling
) -> None:
    """Whoever a restricted case refuses, its evidence refuses too, unless the file's
    own restriction names them or they wrote it."""
    merged = evidence_handling(file, case)
    assert merged.codes >= case.codes | file.codes
    if case.restricted and not may_read(who, "officer", case).allowed:
        allowed = may_download(who, "officer", file, case).allowed
        assert allowed == (file.restricted and (who in file.named or who in file.authors))


@given(officers, handlings, agencies)
def test_a_name_only_ever_admits_an_officer_of_the_named_agency(
    who: OfficerId, item: Handling, recipient: str
) -> None:
    if item.restricted and may_read(who, "officer", item).allowed:
        assert who in item.named or who in item.authors
    names = item.wire(recipient)[1]
    assert all(OfficerId(recipient, n) in item.named for n in names)
    assert (R in item.wire(recipient)[0]) == bool(names)


@given(officers, handlings, agencies)
def test_forwarding_needs_reading(who: OfficerId, item: Handling, to: str) -> None:
    if may_forward(who, "officer", item, to).allowed:
        assert may_read(who, "officer", item).allowed
        assert HandlingCode.NO_ONWARD_TRANSMISSION not in item.codes


def test_merge_is_order_free() -> None:
    parts = [
        Handling.of((R,), ("a",), recipient=FR),
        Handling.of((NO,), ("b",), recipient=GB, author=officer(GB, "x")),
        Handling.of((R, NE), ("c",), recipient=GB, author=officer(FR, "y")),
    ]
    merged = {p[0].merged(*p[1:]) for p in itertools.permutations(parts)}
    assert len(merged) == 1
