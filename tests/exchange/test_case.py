"""The case state machine: lifecycle, every refused transition, and the legal clocks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.case import (
    TRANSITIONS,
    Action,
    Case,
    CaseMismatchError,
    CaseState,
    ClockLimits,
    ClockPolicy,
    IllegalTransitionError,
    MissingGroundsError,
    NotEntitledError,
    Party,
    Transition,
    TransitionOrderError,
    Urgency,
    allowed_actions,
    deadlines,
    overdue,
    replay,
)
from exchange.errors import InvalidFieldError, MlaxError

S, A = CaseState, Action
ING, ED = Party.REQUESTING, Party.REQUESTED
REF = "FR-OCRTEH/2026/0042"
T0 = 1_800_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR

# Written out by hand from the issue, independently of exchange.case.TRANSITIONS.
ALLOWED: dict[tuple[CaseState, Action, Party], CaseState] = {
    (S.DRAFT, A.SUBMIT, ING): S.SUBMITTED,
    (S.SUBMITTED, A.ACKNOWLEDGE, ED): S.ACKNOWLEDGED,
    (S.SUBMITTED, A.REQUEST_INFO, ED): S.MORE_INFO_REQUESTED,
    (S.ACKNOWLEDGED, A.REQUEST_INFO, ED): S.MORE_INFO_REQUESTED,
    (S.MORE_INFO_REQUESTED, A.PROVIDE_INFO, ING): S.ACKNOWLEDGED,
    (S.ACKNOWLEDGED, A.ACCEPT, ED): S.ACCEPTED,
    (S.ACKNOWLEDGED, A.REFUSE, ED): S.REFUSED,
    (S.ACCEPTED, A.START_EXECUTION, ED): S.IN_EXECUTION,
    (S.IN_EXECUTION, A.REPORT_PARTIAL, ED): S.PARTIALLY_EXECUTED,
    (S.PARTIALLY_EXECUTED, A.REPORT_PARTIAL, ED): S.PARTIALLY_EXECUTED,
    (S.IN_EXECUTION, A.REPORT_EXECUTED, ED): S.EXECUTED,
    (S.PARTIALLY_EXECUTED, A.REPORT_EXECUTED, ED): S.EXECUTED,
    (S.DRAFT, A.WITHDRAW, ING): S.WITHDRAWN,
    (S.SUBMITTED, A.WITHDRAW, ING): S.WITHDRAWN,
    (S.ACKNOWLEDGED, A.WITHDRAW, ING): S.WITHDRAWN,
    (S.MORE_INFO_REQUESTED, A.WITHDRAW, ING): S.WITHDRAWN,
    (S.ACCEPTED, A.WITHDRAW, ING): S.WITHDRAWN,
    (S.IN_EXECUTION, A.WITHDRAW, ING): S.WITHDRAWN,
    (S.PARTIALLY_EXECUTED, A.WITHDRAW, ING): S.WITHDRAWN,
    (S.EXECUTED, A.CLOSE, ING): S.CLOSED,
    (S.REFUSED, A.CLOSE, ING): S.CLOSED,
    (S.WITHDRAWN, A.CLOSE, ING): S.CLOSED,
}
LEGAL_PAIRS = {(state, action) for state, action, _ in ALLOWED}


def reachable_from_draft() -> set[CaseState]:
    seen = {S.DRAFT}
    frontier = [S.DRAFT]
    while frontier:
        here = frontier.pop()
        for (state, _, _), nxt in ALLOWED.items():
            if state is here and nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def new_case(urgency: Urgency = Urgency.ORDINARY) -> Case:
    return Case(REF, "FR-OCRTEH", "DE-BKA", urgency, opened_at=T0)


def step(action: Action, party: Party, at_ms: int, reason: str = "") -> Transition:
    return Transition(REF, action, party, at_ms, reason)


def case_in(state: CaseState) -> Case:
    """A case driven to `state` along a legal path (built with plain constructors)."""
    paths: dict[CaseState, list[tuple[Action, Party]]] = {
        S.DRAFT: [],
        S.SUBMITTED: [(A.SUBMIT, ING)],
        S.ACKNOWLEDGED: [(A.SUBMIT, ING), (A.ACKNOWLEDGE, ED)],
        S.MORE_INFO_REQUESTED: [(A.SUBMIT, ING), (A.REQUEST_INFO, ED)],
        S.ACCEPTED: [(A.SUBMIT, ING), (A.ACKNOWLEDGE, ED), (A.ACCEPT, ED)],
        S.REFUSED: [(A.SUBMIT, ING), (A.ACKNOWLEDGE, ED), (A.REFUSE, ED)],
        S.IN_EXECUTION: [
            (A.SUBMIT, ING),
            (A.ACKNOWLEDGE, ED),
            (A.ACCEPT, ED),
            (A.START_EXECUTION, ED),
        ],
        S.PARTIALLY_EXECUTED: [
            (A.SUBMIT, ING),
            (A.ACKNOWLEDGE, ED),
            (A.ACCEPT, ED),
            (A.START_EXECUTION, ED),
            (A.REPORT_PARTIAL, ED),
        ],
        S.EXECUTED: [
            (A.SUBMIT, ING),
            (A.ACKNOWLEDGE, ED),
            (A.ACCEPT, ED),
            (A.START_EXECUTION, ED),
            (A.REPORT_EXECUTED, ED),
        ],
        S.WITHDRAWN: [(A.SUBMIT, ING), (A.WITHDRAW, ING)],
        S.CLOSED: [(A.SUBMIT, ING), (A.WITHDRAW, ING), (A.CLOSE, ING)],
    }
    steps = [
        step(action, party, T0 + i * HOUR, "grounds")
        for i, (action, party) in enumerate(paths[state], start=1)
    ]
    case = replay(new_case(), steps)
    assert case.state is state
    return case


# --- lifecycle -----------------------------------------------------------------------------


def test_full_mla_lifecycle_applies_and_replays_to_the_same_case() -> None:
    steps = [
        step(A.SUBMIT, ING, T0 + 1),
        step(A.ACKNOWLEDGE, ED, T0 + HOUR),
        step(A.REQUEST_INFO, ED, T0 + DAY, "Which account numbers?"),
        step(A.PROVIDE_INFO, ING, T0 + 2 * DAY),
        step(A.ACCEPT, ED, T0 + 3 * DAY),
        step(A.START_EXECUTION, ED, T0 + 4 * DAY),
        step(A.REPORT_PARTIAL, ED, T0 + 10 * DAY, "bank records 2024"),
        step(A.REPORT_PARTIAL, ED, T0 + 12 * DAY, "bank records 2025"),
        step(A.REPORT_EXECUTED, ED, T0 + 20 * DAY),
        step(A.CLOSE, ING, T0 + 21 * DAY),
    ]
    case = new_case()
    states = []
    for t in steps:
        case = case.apply(t)
        states.append(case.state)
    assert states == [
        S.SUBMITTED,
        S.ACKNOWLEDGED,
        S.MORE_INFO_REQUESTED,
        S.ACKNOWLEDGED,
        S.ACCEPTED,
        S.IN_EXECUTION,
        S.PARTIALLY_EXECUTED,
        S.PARTIALLY_EXECUTED,
        S.EXECUTED,
        S.CLOSED,
    ]
    assert case.history == tuple(steps)
    assert replay(new_case(), steps) == case


def test_apply_does_not_change_the_original_case() -> None:
    case = new_case()
    case.apply(step(A.SUBMIT, ING, T0))
    assert case.state is S.DRAFT
    assert case.history == ()


# --- every combination ---------------------------------------------------------------------

ALL_TRIPLES = list(itertools.product(CaseState, Action, Party))


@pytest.mark.parametrize(
    ("state", "action", "party"),
    ALL_TRIPLES,
    ids=[f"{s.name}-{a.name}-{p.name}" for s, a, p in ALL_TRIPLES],
)
def test_every_state_action_party_matches_the_hand_written_table(
    state: CaseState, action: Action, party: Party
) -> None:
    case = case_in(state)
    t = step(action, party, T0 + DAY, reason="Dual criminality is not met.")
    if (state, action, party) in ALLOWED:
        assert case.apply(t).state is ALLOWED[(state, action, party)]
    elif (state, action) in LEGAL_PAIRS:
        entitled = ED if party is ING else ING
        with pytest.raises(NotEntitledError, match=f"Only the {entitled.value} party"):
            case.apply(t)
    else:
        with pytest.raises(IllegalTransitionError) as err:
            case.apply(t)
        assert err.value.status == "FAILED_PRECONDITION"
        assert state.value in err.value.message
        assert action.value in err.value.message


def test_module_table_has_exactly_the_hand_written_transitions() -> None:
    assert {(s, a, p): n for (s, a), (p, n) in TRANSITIONS.items()} == ALLOWED


@pytest.mark.parametrize(("state", "action", "party"), list(ALLOWED))
def test_the_other_party_is_not_entitled_and_told_who_is(
    state: CaseState, action: Action, party: Party
) -> None:
    other = ED if party is ING else ING
    with pytest.raises(NotEntitledError, match=f"Only the {party.value} party") as err:
        case_in(state).apply(step(action, other, T0 + DAY, "grounds"))
    assert err.value.status == "PERMISSION_DENIED"


def test_allowed_actions_lists_what_each_party_may_do() -> None:
    assert allowed_actions(S.ACKNOWLEDGED, ED) == [A.REQUEST_INFO, A.ACCEPT, A.REFUSE]
    assert allowed_actions(S.ACKNOWLEDGED, ING) == [A.WITHDRAW]
    assert allowed_actions(S.EXECUTED, ED) == []
    for state, party in itertools.product(CaseState, Party):
        expected = [a for a in Action if (state, a, party) in ALLOWED]
        assert allowed_actions(state, party) == expected


def test_closed_is_terminal_and_refuses_everything() -> None:
    closed = case_in(S.CLOSED)
    for action, party in itertools.product(Action, Party):
        with pytest.raises(IllegalTransitionError, match="closed"):
            closed.apply(step(action, party, T0 + DAY, "grounds"))


# --- other rejections ----------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   "])
def test_refusal_without_grounds_is_rejected(reason: str) -> None:
    with pytest.raises(MissingGroundsError, match="grounds") as err:
        case_in(S.ACKNOWLEDGED).apply(step(A.REFUSE, ED, T0 + DAY, reason))
    assert err.value.status == "INVALID_ARGUMENT"


def test_refusal_with_grounds_records_them() -> None:
    refused = case_in(S.ACKNOWLEDGED).apply(step(A.REFUSE, ED, T0 + DAY, "Ne bis in idem."))
    assert refused.history[-1].reason == "Ne bis in idem."


def test_transition_earlier_than_the_previous_one_is_rejected() -> None:
    case = new_case().apply(step(A.SUBMIT, ING, T0 + HOUR))
    with pytest.raises(TransitionOrderError) as err:
        case.apply(step(A.ACKNOWLEDGE, ED, T0 + HOUR - 1))
    assert err.value.status == "INVALID_ARGUMENT"
    assert case.apply(step(A.ACKNOWLEDGE, ED, T0 + HOUR)).state is S.ACKNOWLEDGED


def test_transition_before_the_case_was_opened_is_rejected() -> None:
    with pytest.raises(TransitionOrderError):
        new_case().apply(step(A.SUBMIT, ING, T0 - 1))


def test_transition_for_another_case_is_rejected() -> None:
    with pytest.raises(CaseMismatchError):
        new_case().apply(Transition("OTHER", A.SUBMIT, ING, T0))


def test_party_of_maps_agencies_and_rejects_strangers() -> None:
    case = new_case()
    assert case.party_of("FR-OCRTEH") is ING
    assert case.party_of("DE-BKA") is ED
    with pytest.raises(NotEntitledError, match="NL-POLITIE"):
        case.party_of("NL-POLITIE")


def test_case_to_itself_is_invalid() -> None:
    with pytest.raises(InvalidFieldError):
        Case(REF, "DE-BKA", "DE-BKA", Urgency.URGENT, opened_at=T0)


# --- legal clocks --------------------------------------------------------------------------

POLICY = ClockPolicy()


def submitted(urgency: Urgency) -> Case:
    return new_case(urgency).apply(step(A.SUBMIT, ING, T0))


def test_no_clock_runs_on_a_draft() -> None:
    assert overdue(new_case(), POLICY, T0 + 365 * DAY) == []


def test_ack_overdue_only_after_the_limit() -> None:
    case = submitted(Urgency.ORDINARY)
    assert deadlines(case, POLICY).ack_due == T0 + 10 * DAY
    assert overdue(case, POLICY, T0 + 10 * DAY) == []
    assert overdue(case, POLICY, T0 + 10 * DAY + 1) == ["acknowledgement"]


def test_emergency_limits_are_much_shorter_than_ordinary() -> None:
    later = T0 + 5 * HOUR
    assert overdue(submitted(Urgency.EMERGENCY), POLICY, later) == ["acknowledgement"]
    assert overdue(submitted(Urgency.ORDINARY), POLICY, later) == []
    assert overdue(submitted(Urgency.EMERGENCY), POLICY, T0 + 25 * HOUR) == [
        "acknowledgement",
        "response",
    ]


def test_ack_met_after_acknowledgement_but_response_still_runs() -> None:
    case = submitted(Urgency.URGENT).apply(step(A.ACKNOWLEDGE, ED, T0 + DAY))
    assert deadlines(case, POLICY).ack_due is None
    assert deadlines(case, POLICY).response_due == T0 + 10 * DAY
    assert overdue(case, POLICY, T0 + 11 * DAY) == ["response"]


def test_response_met_by_acceptance_or_refusal() -> None:
    ack = submitted(Urgency.URGENT).apply(step(A.ACKNOWLEDGE, ED, T0 + DAY))
    accepted = ack.apply(step(A.ACCEPT, ED, T0 + 2 * DAY))
    refused = ack.apply(step(A.REFUSE, ED, T0 + 2 * DAY, "Political offence."))
    for case in (accepted, refused, accepted.apply(step(A.START_EXECUTION, ED, T0 + 3 * DAY))):
        assert overdue(case, POLICY, T0 + 365 * DAY) == []


def test_clocks_pause_during_more_info_and_response_restarts_in_full() -> None:
    asked = submitted(Urgency.URGENT).apply(step(A.REQUEST_INFO, ED, T0 + DAY, "Which IBAN?"))
    # A request for information proves receipt: the acknowledgement clock is met.
    assert deadlines(asked, POLICY).ack_due is None
    assert overdue(asked, POLICY, T0 + 365 * DAY) == []
    provided = asked.apply(step(A.PROVIDE_INFO, ING, T0 + 30 * DAY))
    assert deadlines(provided, POLICY).response_due == T0 + 40 * DAY
    assert overdue(provided, POLICY, T0 + 40 * DAY) == []
    assert overdue(provided, POLICY, T0 + 40 * DAY + 1) == ["response"]


@pytest.mark.parametrize("state", [S.WITHDRAWN, S.CLOSED])
def test_no_clock_for_withdrawn_or_closed_cases(state: CaseState) -> None:
    assert deadlines(case_in(state), POLICY) == deadlines(new_case(), POLICY)
    assert overdue(case_in(state), POLICY, T0 + 365 * DAY) == []


def test_federation_configures_its_own_limits() -> None:
    strict = ClockPolicy(ordinary=ClockLimits(ack_ms=HOUR, response_ms=DAY))
    assert overdue(submitted(Urgency.ORDINARY), strict, T0 + 2 * HOUR) == ["acknowledgement"]


@pytest.mark.parametrize(("ack", "response"), [(0, DAY), (HOUR, -1), (2 * DAY, DAY)])
def test_nonsense_limits_are_rejected(ack: int, response: int) -> None:
    with pytest.raises(InvalidFieldError):
        ClockLimits(ack_ms=ack, response_ms=response)


# --- property ------------------------------------------------------------------------------

REACHABLE = reachable_from_draft()
ENTITLED = {(state, action): party for state, action, party in ALLOWED}


@settings(max_examples=200, deadline=None)
@given(
    actions=st.lists(st.sampled_from(Action), max_size=25),
    gaps=st.lists(st.integers(min_value=-2, max_value=DAY), min_size=25, max_size=25),
)
def test_random_sequences_stay_in_the_table_and_replay_agrees(
    actions: list[Action], gaps: list[int]
) -> None:
    case = new_case()
    accepted: list[Transition] = []
    at = T0
    for action, gap in zip(actions, gaps, strict=False):
        at += gap
        party = ENTITLED.get((case.state, action), ING)
        t = step(action, party, at, reason="grounds" if gap % 2 else "")
        try:
            case = case.apply(t)
        except MlaxError:
            continue
        accepted.append(t)
        assert case.state in REACHABLE
    assert replay(new_case(), accepted) == case
