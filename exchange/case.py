"""The case state machine and its legal clocks: pure, mirrored on both nodes.

A case moves from DRAFT to CLOSED through transitions, each carried in a signed
envelope from the party entitled to make it. Both the requesting and the requested
node apply the same `TRANSITIONS` table, so a transition one side accepts the other
accepts too, and `replay` rebuilds the same state from the same history. Nothing
here does I/O: it takes a case and a transition and returns a new case or raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import reduce
from types import MappingProxyType

from exchange.errors import (
    ConflictError,
    InputError,
    InvalidFieldError,
    PolicyError,
    Status,
)


class CaseState(Enum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACKNOWLEDGED = "acknowledged"
    MORE_INFO_REQUESTED = "more_info_requested"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    IN_EXECUTION = "in_execution"
    PARTIALLY_EXECUTED = "partially_executed"
    EXECUTED = "executed"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"


class Party(Enum):
    REQUESTING = "requesting"
    REQUESTED = "requested"


class Action(Enum):
    SUBMIT = "submit"
    ACKNOWLEDGE = "acknowledge"
    REQUEST_INFO = "request_info"
    PROVIDE_INFO = "provide_info"
    ACCEPT = "accept"
    REFUSE = "refuse"
    START_EXECUTION = "start_execution"
    REPORT_PARTIAL = "report_partial"
    REPORT_EXECUTED = "report_executed"
    WITHDRAW = "withdraw"
    CLOSE = "close"


class Urgency(Enum):
    EMERGENCY = "emergency"
    URGENT = "urgent"
    ORDINARY = "ordinary"


# --- errors --------------------------------------------------------------------------------


class CaseMismatchError(InputError):
    """A transition that names another case than the one it is applied to."""


class IllegalTransitionError(ConflictError):
    """An action the state machine does not allow in the case's current state."""

    status = Status.FAILED_PRECONDITION


class NotEntitledError(PolicyError):
    """A legal action made by the party that is not entitled to make it."""

    status = Status.PERMISSION_DENIED


class MissingGroundsError(InputError):
    """A refusal that states no grounds."""


class TransitionOrderError(InputError):
    """A transition dated before the case's previous transition (or its opening)."""


# --- the table -----------------------------------------------------------------------------

_S = CaseState
_A = Action
_REQUESTING = Party.REQUESTING
_REQUESTED = Party.REQUESTED

# The single source of truth: (state, action) -> (entitled party, next state).
TRANSITIONS: Mapping[tuple[CaseState, Action], tuple[Party, CaseState]] = MappingProxyType(
    {
        (_S.DRAFT, _A.SUBMIT): (_REQUESTING, _S.SUBMITTED),
        (_S.SUBMITTED, _A.ACKNOWLEDGE): (_REQUESTED, _S.ACKNOWLEDGED),
        # A request for information may come before a formal acknowledgement: it proves
        # receipt all the same, so it also meets the acknowledgement clock.
        (_S.SUBMITTED, _A.REQUEST_INFO): (_REQUESTED, _S.MORE_INFO_REQUESTED),
        (_S.ACKNOWLEDGED, _A.REQUEST_INFO): (_REQUESTED, _S.MORE_INFO_REQUESTED),
        # Supplying the information returns the case to assessment, never straight to a
        # decision: the requested party decides after reading it.
        (_S.MORE_INFO_REQUESTED, _A.PROVIDE_INFO): (_REQUESTING, _S.ACKNOWLEDGED),
        (_S.ACKNOWLEDGED, _A.ACCEPT): (_REQUESTED, _S.ACCEPTED),
        (_S.ACKNOWLEDGED, _A.REFUSE): (_REQUESTED, _S.REFUSED),
        (_S.ACCEPTED, _A.START_EXECUTION): (_REQUESTED, _S.IN_EXECUTION),
        # Partial reports may repeat: evidence often arrives in several batches.
        (_S.IN_EXECUTION, _A.REPORT_PARTIAL): (_REQUESTED, _S.PARTIALLY_EXECUTED),
        (_S.PARTIALLY_EXECUTED, _A.REPORT_PARTIAL): (_REQUESTED, _S.PARTIALLY_EXECUTED),
        (_S.IN_EXECUTION, _A.REPORT_EXECUTED): (_REQUESTED, _S.EXECUTED),
        (_S.PARTIALLY_EXECUTED, _A.REPORT_EXECUTED): (_REQUESTED, _S.EXECUTED),
        # The requesting state may withdraw until the outcome is settled (executed or
        # refused); withdrawing a draft abandons it before it ever left the node.
        (_S.DRAFT, _A.WITHDRAW): (_REQUESTING, _S.WITHDRAWN),
        (_S.SUBMITTED, _A.WITHDRAW): (_REQUESTING, _S.WITHDRAWN),
        (_S.ACKNOWLEDGED, _A.WITHDRAW): (_REQUESTING, _S.WITHDRAWN),
        (_S.MORE_INFO_REQUESTED, _A.WITHDRAW): (_REQUESTING, _S.WITHDRAWN),
        (_S.ACCEPTED, _A.WITHDRAW): (_REQUESTING, _S.WITHDRAWN),
        (_S.IN_EXECUTION, _A.WITHDRAW): (_REQUESTING, _S.WITHDRAWN),
        (_S.PARTIALLY_EXECUTED, _A.WITHDRAW): (_REQUESTING, _S.WITHDRAWN),
        # Closing is the requesting side's: it alone knows it needs nothing more.
        (_S.EXECUTED, _A.CLOSE): (_REQUESTING, _S.CLOSED),
        (_S.REFUSED, _A.CLOSE): (_REQUESTING, _S.CLOSED),
        (_S.WITHDRAWN, _A.CLOSE): (_REQUESTING, _S.CLOSED),
    }
)

TERMINAL_STATES = frozenset({CaseState.CLOSED})


def allowed_actions(state: CaseState, party: Party) -> list[Action]:
    """The actions `party` may take in `state`, in declaration order (for UIs)."""
    return [
        action
        for action in Action
        if (entry := TRANSITIONS.get((state, action))) is not None and entry[0] is party
    ]


# --- case and transitions ------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One step of a case, as carried in a signed CASE_TRANSITION envelope."""

    case_ref: str
    action: Action
    party: Party
    at_ms: int
    reason: str = ""


@dataclass(frozen=True)
class Case:
    """A case as both nodes see it: the parties, its urgency, state and full history."""

    case_ref: str
    requesting_agency: str
    requested_agency: str
    urgency: Urgency
    opened_at: int
    state: CaseState = CaseState.DRAFT
    history: tuple[Transition, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.case_ref:
            raise InvalidFieldError("A case needs a non-empty case reference.")
        if self.requesting_agency == self.requested_agency:
            raise InvalidFieldError(
                f"Agency {self.requesting_agency} cannot send a case to itself."
            )

    def party_of(self, agency_id: str) -> Party:
        """The party `agency_id` plays in this case; any other agency is not entitled."""
        if agency_id == self.requesting_agency:
            return Party.REQUESTING
        if agency_id == self.requested_agency:
            return Party.REQUESTED
        raise NotEntitledError(f"Agency {agency_id} is not a party to case {self.case_ref}.")

    def apply(self, transition: Transition) -> Case:
        """Return the case after `transition`, or raise without changing anything."""
        if transition.case_ref != self.case_ref:
            raise CaseMismatchError(
                f"Transition for case {transition.case_ref} cannot apply to case {self.case_ref}."
            )
        entry = TRANSITIONS.get((self.state, transition.action))
        if entry is None:
            raise IllegalTransitionError(
                f"Case {self.case_ref} is {self.state.value}: "
                f"{transition.action.value} is not allowed in that state."
            )
        entitled, next_state = entry
        if transition.party is not entitled:
            raise NotEntitledError(
                f"Only the {entitled.value} party may {transition.action.value} "
                f"case {self.case_ref} when it is {self.state.value}."
            )
        if transition.action is Action.REFUSE and not transition.reason.strip():
            raise MissingGroundsError(f"A refusal of case {self.case_ref} must state its grounds.")
        last_at = self.history[-1].at_ms if self.history else self.opened_at
        if transition.at_ms < last_at:
            raise TransitionOrderError(
                f"Transition at {transition.at_ms} ms is earlier than the case's previous "
                f"event at {last_at} ms."
            )
        return replace(self, state=next_state, history=(*self.history, transition))


def replay(initial: Case, transitions: Iterable[Transition]) -> Case:
    """Apply `transitions` in order to `initial`; both nodes get the same case or error."""
    return reduce(Case.apply, transitions, initial)


# --- legal clocks --------------------------------------------------------------------------

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS


@dataclass(frozen=True)
class ClockLimits:
    """Time allowed to the requested party, from submission, for one urgency level."""

    ack_ms: int
    response_ms: int

    def __post_init__(self) -> None:
        if self.ack_ms <= 0 or self.response_ms <= 0:
            raise InvalidFieldError("Clock limits must be positive durations.")
        if self.ack_ms > self.response_ms:
            raise InvalidFieldError(
                "The acknowledgement limit cannot be longer than the response limit."
            )


@dataclass(frozen=True)
class ClockPolicy:
    """Per-urgency limits for acknowledgement and response (accept or refuse).

    Each federation configures these in its agreement; the defaults are deliberately
    conservative placeholders, not figures from any treaty.
    """

    emergency: ClockLimits = ClockLimits(ack_ms=4 * _HOUR_MS, response_ms=24 * _HOUR_MS)
    urgent: ClockLimits = ClockLimits(ack_ms=2 * _DAY_MS, response_ms=10 * _DAY_MS)
    ordinary: ClockLimits = ClockLimits(ack_ms=10 * _DAY_MS, response_ms=60 * _DAY_MS)

    def limits(self, urgency: Urgency) -> ClockLimits:
        """The limits that apply to a case of `urgency`."""
        return {
            Urgency.EMERGENCY: self.emergency,
            Urgency.URGENT: self.urgent,
            Urgency.ORDINARY: self.ordinary,
        }[urgency]


@dataclass(frozen=True)
class Deadlines:
    """When each clock falls due (ms since epoch), or None when met or not running."""

    ack_due: int | None
    response_due: int | None


# Clocks run only while the requested party owes an answer on a live request.
_CLOCKS_STOPPED = frozenset({CaseState.DRAFT, CaseState.WITHDRAWN, CaseState.CLOSED})


def deadlines(case: Case, policy: ClockPolicy) -> Deadlines:
    """The running deadlines of `case` under `policy`.

    Both clocks start at submission. The acknowledgement clock is met by any act of the
    requested party (a request for information proves receipt too). The response clock
    is met by acceptance or refusal; it is paused while more information is requested
    and restarts in full from the moment the information is provided, since the
    requested party could not decide on an incomplete request.
    """
    if case.state in _CLOCKS_STOPPED:
        return Deadlines(ack_due=None, response_due=None)
    submitted_at: int | None = None
    response_from: int | None = None
    acted = decided = False
    for t in case.history:
        if t.action is Action.SUBMIT:
            submitted_at = response_from = t.at_ms
        elif t.action is Action.PROVIDE_INFO:
            response_from = t.at_ms
        if t.party is Party.REQUESTED:
            acted = True
        if t.action in (Action.ACCEPT, Action.REFUSE):
            decided = True
    if submitted_at is None or response_from is None:
        return Deadlines(ack_due=None, response_due=None)
    limits = policy.limits(case.urgency)
    ack_due = None if acted else submitted_at + limits.ack_ms
    paused = case.state is CaseState.MORE_INFO_REQUESTED
    response_due = None if decided or paused else response_from + limits.response_ms
    return Deadlines(ack_due=ack_due, response_due=response_due)


def overdue(case: Case, policy: ClockPolicy, now_ms: int) -> list[str]:
    """Names of the clocks of `case` that have run out at `now_ms`."""
    due = deadlines(case, policy)
    names: list[str] = []
    if due.ack_due is not None and now_ms > due.ack_due:
        names.append("acknowledgement")
    if due.response_due is not None and now_ms > due.response_due:
        names.append("response")
    return names
