"""Unit tests of common/messages.py: the field checks and the task message's wire format."""

from __future__ import annotations

import contextlib
import json
import math

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.messages import (
    MAX_TIMEOUT,
    InvalidField,
    TaskMessage,
    parse_flag,
    parse_task_num,
    parse_timeout,
)

# No example database in the work tree, no flaky deadlines on a loaded CI machine, and the same
# examples on every run: a failure here is reproducible, never a one-off.
fast = hypothesis.settings(database=None, deadline=None, derandomize=True)

# What json.loads can hand us: JSON has no size limit on integers, hence the huge ones.
huge_ints = st.integers(min_value=10**300, max_value=10**500)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


# --- parse_timeout -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (5, 5.0),
        (2.5, 2.5),
        (3600, 3600.0),
        (3600.0, 3600.0),
        ("0", 0.0),
        ("7", 7.0),
        ("1.5", 1.5),
        (" 12 ", 12.0),
        ("3600", 3600.0),
        ("1e3", 1000.0),
        (-0.0, 0.0),
    ],
)
def test_parse_timeout_accepts_seconds_from_0_to_3600(value: object, seconds: float) -> None:
    result = parse_timeout(value)

    assert result == seconds
    assert type(result) is float


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "-3",
        "",
        "   ",
        "1e400",
        "nan",
        "inf",
        "-inf",
        True,
        False,
        None,
        [],
        [5],
        {"seconds": 5},
        -3,
        -0.001,
        3600.5,
        3601,
        "3600.5",
        math.nan,
        math.inf,
        -math.inf,
        pytest.param(10**400, id="10**400"),  # json.loads("1" + "0" * 400) gives this int
    ],
)
def test_parse_timeout_rejects(value: object) -> None:
    with pytest.raises(InvalidField) as info:
        parse_timeout(value)

    assert info.value.field == "timeout"


def test_parse_timeout_names_the_field_it_was_given() -> None:
    with pytest.raises(InvalidField) as info:
        parse_timeout("abc", "processing_timeout")

    assert info.value.field == "processing_timeout"
    assert str(info.value).startswith("processing_timeout: ")


@fast
@given(json_values)
def test_parse_timeout_raises_nothing_but_invalid_field(value: object) -> None:
    try:
        result = parse_timeout(value)
    except InvalidField as exc:
        assert exc.field == "timeout"
    else:
        assert type(result) is float
        assert 0 <= result <= MAX_TIMEOUT


@fast
@given(st.floats(min_value=0, max_value=MAX_TIMEOUT))
def test_parse_timeout_accepts_every_float_in_range_and_its_text(value: float) -> None:
    assert parse_timeout(value) == value
    assert parse_timeout(repr(value)) == value


# --- parse_flag and parse_task_num ---------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_parse_flag_accepts_booleans(value: bool) -> None:
    assert parse_flag(value) is value


@pytest.mark.parametrize("value", [0, 1, "true", "false", "", None, [], 1.0])
def test_parse_flag_rejects_everything_else(value: object) -> None:
    with pytest.raises(InvalidField) as info:
        parse_flag(value)

    assert info.value.field == "fail"


@pytest.mark.parametrize("value", [1, 2, 10**6, 10**30])
def test_parse_task_num_accepts_positive_integers(value: int) -> None:
    assert parse_task_num(value) == value


@pytest.mark.parametrize("value", [0, -1, True, False, 1.0, "1", None, [1]])
def test_parse_task_num_rejects(value: object) -> None:
    with pytest.raises(InvalidField) as info:
        parse_task_num(value)

    assert info.value.field == "task_num"


def test_invalid_field_carries_field_and_message() -> None:
    exc = InvalidField("count", "must be a whole number", "нужно целое число")

    assert isinstance(exc, ValueError)
    assert exc.field == "count"
    assert (exc.message, exc.message_ru) == ("must be a whole number", "нужно целое число")
    assert str(exc) == "count: must be a whole number"


# --- TaskMessage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [TaskMessage(1, 0.0), TaskMessage(42, 2.5, fail=True), TaskMessage(10**12, MAX_TIMEOUT)],
)
def test_task_message_round_trip(message: TaskMessage) -> None:
    assert TaskMessage.from_json(message.to_json()) == message


def test_task_message_wire_format() -> None:
    body = TaskMessage(7, 1.5, fail=True).to_json()

    assert isinstance(body, bytes)
    assert json.loads(body) == {"task_num": 7, "timeout": 1.5, "fail": True}


def test_task_message_fail_defaults_to_false() -> None:
    assert TaskMessage.from_json(b'{"task_num": 3, "timeout": 1}') == TaskMessage(3, 1.0, False)


def test_task_message_ignores_unknown_fields() -> None:
    body = b'{"task_num": 3, "timeout": 1, "fail": false, "extra": [1, 2]}'

    assert TaskMessage.from_json(body) == TaskMessage(3, 1.0)


@fast
@given(
    st.integers(min_value=1),
    st.floats(min_value=0, max_value=MAX_TIMEOUT),
    st.booleans(),
)
def test_task_message_round_trips_every_valid_message(
    task_num: int, timeout: float, fail: bool
) -> None:
    message = TaskMessage(task_num, timeout, fail)

    assert TaskMessage.from_json(message.to_json()) == message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "body"),
        (b"not json", "body"),
        (b"{'task_num': 1}", "body"),
        (b'{"task_num": 1, "timeout": 1', "body"),
        (b"\xff\xfe\xfa", "body"),
        (b'{"task_num": 1, "timeout": "\xff"}', "body"),
        (b"[1, 2]", "body"),
        (b'"text"', "body"),
        (b"42", "body"),
        (b"null", "body"),
        (b"{}", "task_num"),
        (b'{"timeout": 1}', "task_num"),
        (b'{"task_num": 1}', "timeout"),
        (b'{"task_num": "1", "timeout": 1}', "task_num"),
        (b'{"task_num": 0, "timeout": 1}', "task_num"),
        (b'{"task_num": true, "timeout": 1}', "task_num"),
        (b'{"task_num": 1.0, "timeout": 1}', "task_num"),
        (b'{"task_num": null, "timeout": 1}', "task_num"),
        (b'{"task_num": 1, "timeout": "abc"}', "timeout"),
        (b'{"task_num": 1, "timeout": -1}', "timeout"),
        (b'{"task_num": 1, "timeout": 3600.5}', "timeout"),
        (b'{"task_num": 1, "timeout": null}', "timeout"),
        (b'{"task_num": 1, "timeout": [1]}', "timeout"),
        (b'{"task_num": 1, "timeout": NaN}', "timeout"),
        (b'{"task_num": 1, "timeout": Infinity}', "timeout"),
        (b'{"task_num": 1, "timeout": 1e400}', "timeout"),
        pytest.param(
            b'{"task_num": 1, "timeout": 1' + b"0" * 400 + b"}", "timeout", id="timeout-401-digits"
        ),
        (b'{"task_num": 1, "timeout": 1, "fail": "yes"}', "fail"),
        (b'{"task_num": 1, "timeout": 1, "fail": 1}', "fail"),
        (b'{"task_num": 1, "timeout": 1, "fail": null}', "fail"),
    ],
)
def test_task_message_from_json_rejects(body: bytes, field: str) -> None:
    with pytest.raises(InvalidField) as info:
        TaskMessage.from_json(body)

    assert info.value.field == field


def test_task_message_from_json_rejects_deeply_nested_json() -> None:
    # A few kilobytes a producer can send: the consumer must dead-letter it, not crash.
    with pytest.raises(InvalidField) as info:
        TaskMessage.from_json(b"[" * 100_000)

    assert info.value.field == "body"


@fast
@given(st.binary())
def test_task_message_from_json_raises_nothing_but_invalid_field_for_any_bytes(body: bytes) -> None:
    with contextlib.suppress(InvalidField):
        TaskMessage.from_json(body)


@fast
@given(
    st.fixed_dictionaries(
        {"task_num": st.integers(min_value=1) | json_values, "timeout": huge_ints | json_values},
        optional={"fail": st.booleans() | json_values, "other": json_values},
    )
)
def test_task_message_from_json_raises_nothing_but_invalid_field_for_any_object(
    data: dict[str, object],
) -> None:
    body = json.dumps(data).encode()
    try:
        message = TaskMessage.from_json(body)
    except InvalidField as exc:
        assert exc.field in ("task_num", "timeout", "fail")
    else:
        assert message.task_num >= 1
        assert 0 <= message.timeout <= MAX_TIMEOUT
