"""exchange.policy.reply_handling: a reply keeps the handling of the message it answers."""

from __future__ import annotations

import pytest

from exchange.envelope import HandlingCode
from exchange.errors import InvalidFieldError
from exchange.policy import reply_handling

R, NO, NE = (
    HandlingCode.RESTRICTED_TO_NAMED_OFFICERS,
    HandlingCode.NO_ONWARD_TRANSMISSION,
    HandlingCode.NO_EVIDENTIAL_USE_WITHOUT_CONSENT,
)
GB = "GB-NCA"


def test_a_reply_asking_for_nothing_keeps_the_originals_codes() -> None:
    assert reply_handling((NO,), (), (), GB) == (NO,)
    assert reply_handling((NE, NO), (), (), GB) == (NO, NE)
    assert reply_handling((R, NO), (), ("benoit",), GB) == (NO, R)


def test_requested_codes_are_added_never_in_place_of_the_originals() -> None:
    assert reply_handling((NO,), (NE.value,), (), GB) == (NO, NE)
    assert reply_handling((), (R.value,), ("benoit",), GB) == (R,)
    assert reply_handling((), (), (), GB) == ()
    # Asking for the original's codes again changes nothing.
    assert reply_handling((R, NO), (R.value, NO.value), ("benoit",), GB) == (NO, R)


@pytest.mark.parametrize("names", [(), ("",)])
def test_a_reply_to_a_restricted_message_must_name_the_peers_officers(
    names: tuple[str, ...],
) -> None:
    with pytest.raises(InvalidFieldError) as exc:
        reply_handling((R, NO), (), names, GB)
    assert str(exc.value) == (
        "The message this answers is restricted to named officers: name the officers of "
        "GB-NCA who may read the reply."
    )
    # Even when the officer asks for the restriction themselves.
    with pytest.raises(InvalidFieldError, match="restricted to named officers: name"):
        reply_handling((R,), (R.value,), names, GB)


def test_requested_codes_are_checked_as_every_message_is() -> None:
    with pytest.raises(InvalidFieldError, match="unknown handling code"):
        reply_handling((NO,), (99,), (), GB)
    with pytest.raises(InvalidFieldError, match="a reply restricted to named officers must"):
        reply_handling((NO,), (R.value,), (), GB)
