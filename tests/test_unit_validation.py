"""Unit tests of api/validation.py: what clients send becomes a typed request or a named error."""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.model import StatusReport, TaskRequest
from api.validation import (
    MAX_BATCH,
    MAX_ROUTING_KEY,
    MAX_WORK,
    MAX_WORKER_ID,
    decode_json_object,
    parse_count,
    parse_data_id,
    parse_status_report,
    parse_task_form,
    parse_task_num_text,
    parse_task_request,
)
from common.messages import InvalidField
from common.statuses import TaskStatus
from common.tasks import Method

fast = hypothesis.settings(database=None, deadline=None, derandomize=True)


def field_of(call, *args) -> str:
    """The field named by the InvalidField that ``call(*args)`` raises."""
    with pytest.raises(InvalidField) as info:
        call(*args)
    return info.value.field


# --- decode_json_object --------------------------------------------------------------------------


def test_decode_json_object_returns_the_object() -> None:
    body = '{"method": "rmq", "timeout": 1, "name": "задача"}'.encode()

    assert decode_json_object(body) == {"method": "rmq", "timeout": 1, "name": "задача"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "is empty, expected a JSON object"),
        (b'{"a": "\xff"}', "is not UTF-8"),
        ('{"a": 1}'.encode("utf-16"), "is not UTF-8"),
        (b"{", "is not valid JSON"),
        (b"{'a': 1}", "is not valid JSON"),
        (b"method=rmq&timeout=1", "is not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'[{"method": "rmq"}]', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b"3", "must be a JSON object"),
        (b'"{}"', "must be a JSON object"),
    ],
)
def test_decode_json_object_rejects(body: bytes, message: str) -> None:
    with pytest.raises(InvalidField) as info:
        decode_json_object(body)

    assert info.value.field == "body"
    assert info.value.message == message


def test_decode_json_object_rejects_deeply_nested_json() -> None:
    # A 100 kB body (well under aiohttp's 1 MiB limit) must be a 400, not a 500.
    assert field_of(decode_json_object, b"[" * 100_000) == "body"


@fast
@given(st.binary())
def test_decode_json_object_raises_nothing_but_invalid_field(body: bytes) -> None:
    try:
        data = decode_json_object(body)
    except InvalidField as exc:
        assert exc.field == "body"
    else:
        assert isinstance(data, dict)


# --- parse_task_request --------------------------------------------------------------------------


def test_parse_task_request_defaults() -> None:
    request = parse_task_request({"method": "rmq", "timeout": 2})

    assert request == TaskRequest(
        method=Method.RMQ, timeout=2.0, count=1, fail=False, routing_key=""
    )


def test_parse_task_request_every_field() -> None:
    data = {"method": "celery", "timeout": "1.5", "count": 5, "fail": True, "routing_key": "a.b"}

    assert parse_task_request(data) == TaskRequest(
        method=Method.CELERY, timeout=1.5, count=5, fail=True, routing_key="a.b"
    )


def test_parse_task_request_accepts_the_longest_routing_key() -> None:
    key = "k" * MAX_ROUTING_KEY

    request = parse_task_request({"method": "rmq", "timeout": 1, "routing_key": key})

    assert request.routing_key == key


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "method"),
        ({"timeout": 1}, "method"),
        ({"method": "rmq"}, "timeout"),
        ({"method": "kafka", "timeout": 1}, "method"),
        ({"method": "RMQ", "timeout": 1}, "method"),
        ({"method": "", "timeout": 1}, "method"),
        ({"method": None, "timeout": 1}, "method"),
        ({"method": ["rmq"], "timeout": 1}, "method"),
        ({"method": {"rmq": 1}, "timeout": 1}, "method"),
        ({"method": "rmq", "timeout": "abc"}, "timeout"),
        ({"method": "rmq", "timeout": -1}, "timeout"),
        ({"method": "rmq", "timeout": 3601}, "timeout"),
        ({"method": "rmq", "timeout": None}, "timeout"),
        ({"method": "rmq", "timeout": True}, "timeout"),
        ({"method": "rmq", "timeout": 1, "count": 0}, "count"),
        ({"method": "rmq", "timeout": 1, "count": 1001}, "count"),
        ({"method": "rmq", "timeout": 1, "count": "many"}, "count"),
        ({"method": "rmq", "timeout": 1, "count": 2.5}, "count"),
        ({"method": "rmq", "timeout": 1, "count": True}, "count"),
        ({"method": "rmq", "timeout": 1, "count": None}, "count"),
        ({"method": "rmq", "timeout": 1, "fail": "true"}, "fail"),
        ({"method": "rmq", "timeout": 1, "fail": 1}, "fail"),
        ({"method": "rmq", "timeout": 1, "fail": None}, "fail"),
        ({"method": "rmq", "timeout": 1, "routing_key": 5}, "routing_key"),
        ({"method": "rmq", "timeout": 1, "routing_key": None}, "routing_key"),
        ({"method": "rmq", "timeout": 1, "routing_key": "k" * 256}, "routing_key"),
        # Counted in bytes, as AMQP does: 128 two-byte letters are 256 bytes.
        ({"method": "rmq", "timeout": 1, "routing_key": "ж" * 128}, "routing_key"),
    ],
)
def test_parse_task_request_names_the_bad_field(data: dict[str, object], field: str) -> None:
    assert field_of(parse_task_request, data) == field


def test_parse_task_request_huge_timeout_is_a_bad_timeout() -> None:
    # What json.loads makes of a 401-digit number in the body of POST /api/tasks.
    assert field_of(parse_task_request, {"method": "rmq", "timeout": 10**400}) == "timeout"


def from_json(count: int, timeout: float) -> TaskRequest:
    return parse_task_request({"method": "rmq", "timeout": timeout, "count": count})


def from_form(count: int, timeout: float) -> TaskRequest:
    return parse_task_form(Method.RMQ, {"processing_timeout": str(timeout), "count": str(count)})


@pytest.mark.parametrize("parse", [from_json, from_form])
@pytest.mark.parametrize(("count", "timeout"), [(1, 3600), (1000, 3.6), (2, 1800)])
def test_a_request_may_queue_up_to_max_work_seconds(parse, count: int, timeout: float) -> None:
    assert parse(count, timeout).count == count


@pytest.mark.parametrize("parse", [from_json, from_form])
@pytest.mark.parametrize(("count", "timeout"), [(2, 1800.5), (1000, 3600), (1000, 3.61)])
def test_a_request_over_max_work_seconds_names_the_cap(parse, count: int, timeout: float) -> None:
    with pytest.raises(InvalidField) as refused:
        parse(count, timeout)

    assert refused.value.field == "count"
    assert f"at most {MAX_WORK:g} seconds" in str(refused.value)
    assert f"{MAX_WORK:g} секунд" in refused.value.message_ru


# --- parse_task_form -----------------------------------------------------------------------------


def test_parse_task_form_defaults() -> None:
    request = parse_task_form(Method.RMQ, {"processing_timeout": "3"})

    assert request == TaskRequest(
        method=Method.RMQ, timeout=3.0, count=1, fail=False, routing_key=""
    )


def test_parse_task_form_every_field() -> None:
    form = {"processing_timeout": " 2.5 ", "count": "4", "fail": "on", "routing_key": "x"}

    assert parse_task_form(Method.CELERY, form) == TaskRequest(
        method=Method.CELERY, timeout=2.5, count=4, fail=True, routing_key="x"
    )


@pytest.mark.parametrize("value", ["on", "", "anything"])
def test_parse_task_form_checkbox_present_means_fail(value: str) -> None:
    assert parse_task_form(Method.RMQ, {"processing_timeout": "1", "fail": value}).fail is True


def test_parse_task_form_checkbox_absent_means_no_fail() -> None:
    assert parse_task_form(Method.RMQ, {"processing_timeout": "1"}).fail is False


@pytest.mark.parametrize(
    "form", [{"processing_timeout": "1", "count": ""}, {"processing_timeout": "1"}]
)
def test_parse_task_form_count_defaults_to_one(form: dict[str, str]) -> None:
    assert parse_task_form(Method.RMQ, form).count == 1


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({}, "processing_timeout", "is empty"),
        ({"processing_timeout": ""}, "processing_timeout", "is empty"),
        ({"processing_timeout": "   "}, "processing_timeout", "is empty"),
        ({"processing_timeout": "abc"}, "processing_timeout", None),
        ({"processing_timeout": "-1"}, "processing_timeout", None),
        ({"processing_timeout": "nan"}, "processing_timeout", None),
        ({"processing_timeout": "3601"}, "processing_timeout", None),
        ({"processing_timeout": "1", "count": "0"}, "count", None),
        ({"processing_timeout": "1", "count": "x"}, "count", None),
        ({"processing_timeout": "1", "count": "1.5"}, "count", None),
        ({"processing_timeout": "1", "count": "1001"}, "count", None),
        ({"processing_timeout": "1", "routing_key": "k" * 256}, "routing_key", None),
    ],
)
def test_parse_task_form_names_the_bad_field(
    form: dict[str, str], field: str, message: str | None
) -> None:
    with pytest.raises(InvalidField) as info:
        parse_task_form(Method.RMQ, form)

    assert info.value.field == field
    if message is not None:
        assert info.value.message == message


# --- parse_data_id and parse_task_num_text -------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("12", 12), (" 12 ", 12), ("007", 7)])
def test_parse_data_id_accepts_plain_non_negative_integers(raw: str, value: int) -> None:
    assert parse_data_id(raw) == value


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "abc",
        "-1",
        "+1",
        "1;DROP",
        "1.0",
        "1e3",
        "1_000",
        "0x10",
        "١٢",  # Arabic-Indic digits: str.isdigit() and int() accept them
        "１２",  # fullwidth digits
        "²",
    ],
)
def test_parse_data_id_rejects(raw: str | None) -> None:
    assert field_of(parse_data_id, raw) == "data_id"


def test_parse_data_id_rejects_a_number_too_long_for_int() -> None:
    # Python refuses to convert more than 4300 digits; the query string allows about 8000.
    assert field_of(parse_data_id, "9" * 5000) == "data_id"


@fast
@given(st.text())
def test_parse_data_id_accepts_exactly_ascii_digits(raw: str) -> None:
    stripped = raw.strip()
    if stripped and stripped.isascii() and stripped.isdigit():
        assert parse_data_id(raw) == int(stripped)
    else:
        assert field_of(parse_data_id, raw) == "data_id"


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("42", 42), ("0042", 42)])
def test_parse_task_num_text_accepts_positive_integers(raw: str, value: int) -> None:
    assert parse_task_num_text(raw) == value


@pytest.mark.parametrize("raw", ["", "0", "000", "-1", "+1", " 1", "1 ", "abc", "1.0", "١٢"])
def test_parse_task_num_text_rejects(raw: str) -> None:
    assert field_of(parse_task_num_text, raw) == "task_num"


def test_parse_task_num_text_rejects_a_number_too_long_for_int() -> None:
    assert field_of(parse_task_num_text, "9" * 5000) == "task_num"


# --- parse_status_report -------------------------------------------------------------------------

REPORT = {"task_num": 7, "task_status": "IN_PROGRESS", "worker_id": "consumer-1"}


def test_parse_status_report() -> None:
    assert parse_status_report(REPORT) == StatusReport(
        task_num=7, status=TaskStatus.IN_PROGRESS, worker_id="consumer-1"
    )


@pytest.mark.parametrize("status", list(TaskStatus))
def test_parse_status_report_accepts_every_status(status: TaskStatus) -> None:
    assert parse_status_report({**REPORT, "task_status": str(status)}).status is status


def test_parse_status_report_accepts_the_longest_worker_id() -> None:
    worker_id = "w" * MAX_WORKER_ID

    assert parse_status_report({**REPORT, "worker_id": worker_id}).worker_id == worker_id


@pytest.mark.parametrize("worker_id", [{}, {"worker_id": None}])
def test_parse_status_report_takes_the_course_format_without_worker_id(worker_id: dict) -> None:
    # The course's consumer reports {"task_num": N, "task_status": "ERROR"} and nothing else.
    report = parse_status_report({"task_num": 7, "task_status": "ERROR", **worker_id})

    assert report == StatusReport(task_num=7, status=TaskStatus.ERROR, worker_id=None)


def test_parse_status_report_reads_the_redelivered_flag() -> None:
    assert parse_status_report({**REPORT, "redelivered": True}).redelivered is True
    assert parse_status_report(REPORT).redelivered is False


@pytest.mark.parametrize("name", ["task_num", "task_status"])
def test_parse_status_report_missing_field(name: str) -> None:
    data = {key: value for key, value in REPORT.items() if key != name}

    with pytest.raises(InvalidField) as info:
        parse_status_report(data)

    assert info.value.field == name
    assert info.value.message == "is missing"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"task_status": "FINISHED"}, "task_status"),
        ({"task_status": "done"}, "task_status"),
        ({"task_status": ""}, "task_status"),
        ({"task_status": None}, "task_status"),
        ({"task_status": ["DONE"]}, "task_status"),
        ({"task_num": "7"}, "task_num"),
        ({"task_num": 7.0}, "task_num"),
        ({"task_num": 0}, "task_num"),
        ({"task_num": -7}, "task_num"),
        ({"task_num": None}, "task_num"),
        ({"task_num": True}, "task_num"),
        ({"task_num": False}, "task_num"),
        ({"worker_id": ""}, "worker_id"),
        ({"worker_id": "w" * (MAX_WORKER_ID + 1)}, "worker_id"),
        ({"worker_id": 5}, "worker_id"),
        ({"worker_id": "consumer\n2026-01-01 INFO forged line"}, "worker_id"),
        ({"worker_id": "\x1b[31mred"}, "worker_id"),
        ({"redelivered": "yes"}, "redelivered"),
        ({"redelivered": 1}, "redelivered"),
    ],
)
def test_parse_status_report_names_the_bad_field(changes: dict[str, object], field: str) -> None:
    assert field_of(parse_status_report, {**REPORT, **changes}) == field


# --- parse_count ---------------------------------------------------------------------------------

# What json.loads can hand over as "count": JSON has no size limit on integers.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


@pytest.mark.parametrize(
    ("value", "count"), [(1, 1), (7, 7), (MAX_BATCH, MAX_BATCH), ("3", 3), (" 10 ", 10)]
)
def test_parse_count_accepts_whole_numbers_from_1_to_max_batch(value: object, count: int) -> None:
    assert parse_count(value) == count


@pytest.mark.parametrize(
    "value",
    [0, -1, MAX_BATCH + 1, "0", "1001", "abc", "", "2.0", 2.0, True, False, None, [1], "9" * 5000],
)
def test_parse_count_rejects(value: object) -> None:
    with pytest.raises(InvalidField) as info:
        parse_count(value)

    assert info.value.field == "count"


@fast
@given(json_values)
def test_parse_count_raises_nothing_but_invalid_field(value: object) -> None:
    try:
        result = parse_count(value)
    except InvalidField as exc:
        assert exc.field == "count"
    else:
        assert type(result) is int
        assert 1 <= result <= MAX_BATCH
