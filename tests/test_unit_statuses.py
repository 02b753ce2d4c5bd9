"""Unit tests of common/statuses.py: which status may follow which, over every pair."""

from __future__ import annotations

import itertools

import pytest

from common.statuses import ALLOWED_TRANSITIONS, FINAL_STATUSES, TaskStatus, can_transition

P, W, D, E = TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.DONE, TaskStatus.ERROR

# (current, new) -> allowed. Written out in full so that a change to the rule shows up here.
TRANSITIONS = {
    (P, P): False,
    (P, W): True,
    (P, D): True,  # the IN_PROGRESS callback may be lost while the API restarts
    (P, E): True,
    (W, P): False,
    (W, W): True,  # a redelivered message is picked up by another worker
    (W, D): True,
    (W, E): True,
    (D, P): False,
    (D, W): False,
    (D, D): False,
    (D, E): False,
    (E, P): False,
    (E, W): False,
    (E, D): False,
    (E, E): False,
}


def test_the_table_covers_every_pair() -> None:
    assert set(TRANSITIONS) == set(itertools.product(TaskStatus, repeat=2))


@pytest.mark.parametrize(("current", "new"), list(TRANSITIONS))
def test_can_transition_matches_the_table(current: TaskStatus, new: TaskStatus) -> None:
    assert can_transition(current, new) is TRANSITIONS[(current, new)]


def test_allowed_transitions_has_an_entry_for_every_status() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(TaskStatus)


def test_done_and_error_are_the_final_statuses() -> None:
    assert {D, E} == FINAL_STATUSES
    assert [status for status in TaskStatus if status.is_final] == [D, E]


@pytest.mark.parametrize("final", [D, E])
def test_nothing_leaves_a_final_status(final: TaskStatus) -> None:
    assert not any(can_transition(final, new) for new in TaskStatus)


def test_nothing_returns_to_pending() -> None:
    assert not any(can_transition(current, P) for current in TaskStatus)


def test_statuses_are_their_names_on_the_wire() -> None:
    assert [str(status) for status in TaskStatus] == ["PENDING", "IN_PROGRESS", "DONE", "ERROR"]
    assert TaskStatus("IN_PROGRESS") is W
