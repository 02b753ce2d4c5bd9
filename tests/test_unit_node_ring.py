"""The node ring every client of a cluster follows: the next node at once, a pause per failed round."""

from __future__ import annotations

import pytest

from common.node_ring import NodeRing


def test_the_next_node_is_tried_at_once_and_a_failed_round_pauses_longer_each_time() -> None:
    ring = NodeRing("abc", delay_min=0.5, delay_max=3.0)

    tried = []
    pauses = []
    for _ in range(12):
        tried.append(ring.current)
        pauses.append(ring.failed())

    assert "".join(tried) == "abc" * 4
    assert pauses == [0, 0, 0.5, 0, 0, 1.0, 0, 0, 2.0, 0, 0, 3.0]  # capped


def test_the_node_that_answers_stays_and_the_next_outage_pauses_briefly_again() -> None:
    ring = NodeRing("ab", delay_min=0.5, delay_max=10.0)
    for _ in range(4):
        ring.failed()  # two failed rounds: the next pause would be 2 s

    ring.answered()

    assert ring.current == "a"
    assert [ring.failed(), ring.failed()] == [0, 0.5]


def test_a_lost_connection_moves_on_to_the_next_node_without_a_pause() -> None:
    ring = NodeRing("ab")
    ring.answered()

    ring.lost()

    assert ring.current == "b"
    assert ring.failed() == 0  # "a" is still to try in this round


def test_a_single_node_pauses_after_each_failure() -> None:
    ring = NodeRing(["only"], delay_min=1.0, delay_max=4.0)
    assert [ring.failed() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert ring.current == "only"


def test_a_ring_needs_a_node() -> None:
    with pytest.raises(ValueError):
        NodeRing([])
