"""The lifecycle state machine (shared.lifecycle): the table, reasons, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import IllegalTransition, ValidationFailed
from shared.lifecycle import SEARCHABLE, TRANSITIONS, allowed, transition
from shared.schemas.memcube import Lifecycle, LifecycleState

pytestmark = pytest.mark.unit

S = LifecycleState
T0 = datetime(2025, 1, 1, tzinfo=UTC)
states = st.sampled_from(list(LifecycleState))


def at(state: LifecycleState) -> Lifecycle:
    return Lifecycle(state=state, reason="test", changed_at=T0)


def test_the_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(LifecycleState)
    assert {S.generated, S.activated} == SEARCHABLE


@pytest.mark.parametrize(
    ("frm", "to"),
    [
        (S.generated, S.activated),
        (S.activated, S.generated),  # demotion: the KV cache was evicted
        (S.generated, S.merged),
        (S.activated, S.archived),
        (S.generated, S.expired),
        (S.merged, S.expired),
        (S.archived, S.deleted),
        (S.expired, S.deleted),
    ],
)
def test_the_designed_path_is_allowed(frm: LifecycleState, to: LifecycleState) -> None:
    new = transition(at(frm), to, "ttl", T0 + timedelta(days=1))
    assert new == Lifecycle(state=to, reason="ttl", changed_at=T0 + timedelta(days=1))


@pytest.mark.parametrize(
    ("frm", "to"),
    [
        (S.deleted, S.generated),
        (S.expired, S.generated),
        (S.merged, S.generated),
        (S.archived, S.activated),
        (S.merged, S.archived),
        (S.expired, S.expired),
        (S.generated, S.generated),
    ],
)
def test_going_back_or_standing_still_is_illegal(frm: LifecycleState, to: LifecycleState) -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(at(frm), to, "because", T0)
    err = info.value
    assert (err.status, err.code) == (409, "illegal_transition")
    assert (err.from_state, err.to_state) == (frm.value, to.value)
    assert frm.value in err.detail and to.value in err.detail
    problem = err.to_problem()
    assert problem["from"] == frm.value and problem["to"] == to.value
    assert problem["code"] == "illegal_transition"


@given(frm=states, to=states, reason=st.text(min_size=0, max_size=20))
def test_every_pair_obeys_the_table(frm: LifecycleState, to: LifecycleState, reason: str) -> None:
    legal = to in TRANSITIONS[frm]
    assert allowed(frm, to) is legal
    if not reason.strip():
        with pytest.raises(ValidationFailed) as info:
            transition(at(frm), to, reason, T0)
        assert info.value.errors[0].field == "body.reason"
    elif legal:
        new = transition(at(frm), to, reason, T0)
        assert new.state == to and new.reason == reason.strip() and new.changed_at == T0
    else:
        with pytest.raises(IllegalTransition):
            transition(at(frm), to, reason, T0)


@given(frm=states)
def test_no_state_moves_to_itself_and_deleted_is_terminal(frm: LifecycleState) -> None:
    assert not allowed(frm, frm)
    assert not allowed(S.deleted, frm)


@given(path=st.lists(states, min_size=1, max_size=12))
def test_a_retired_cube_never_becomes_searchable_again(path: list[LifecycleState]) -> None:
    """Walk any sequence of legal moves: once out of search (merged, archived,
    expired, deleted), a cube never comes back."""
    state, retired = S.generated, False
    for to in path:
        if not allowed(state, to):
            continue
        state = transition(at(state), to, "walk", T0).state
        retired = retired or state not in SEARCHABLE
        assert not (retired and state in SEARCHABLE)


def test_reason_and_time_are_checked() -> None:
    with pytest.raises(ValidationFailed):
        transition(at(S.generated), S.expired, "   ", T0)
    with pytest.raises(ValidationFailed):
        transition(at(S.generated), S.expired, "x" * 501, T0)
    with pytest.raises(ValidationFailed):
        transition(at(S.generated), S.expired, "ttl", datetime(2025, 1, 1))
