"""LOG_FORMAT: the text line people read, and the same events as JSON objects, a field per value."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from common.logs import configure_logging, task_log
from common.settings import Settings


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """What the root logger writes, configured as an entry point configures it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def configured(output: io.StringIO, log_format: str) -> logging.Logger:
    configure_logging(Settings(log_format=log_format, log_level="DEBUG"))
    for handler in logging.getLogger().handlers:
        handler.setStream(output)
    return logging.getLogger("demo.test")


def lines(output: io.StringIO) -> list[dict]:
    """Every line written, each parsed as JSON (one that is not fails the test here)."""
    return [json.loads(line) for line in output.getvalue().splitlines()]


def test_a_json_line_has_a_field_per_value(output: io.StringIO) -> None:
    log = configured(output, "json")

    task_log(log, 7, "consumer@host:123").info("working %.1f s", 2.0)
    log.warning("broker %s not reachable", "localhost:5672")

    task, plain = lines(output)
    assert task["message"] == "task 7: working 2.0 s, worker=consumer@host:123"
    assert task["task_num"] == 7
    assert task["worker_id"] == "consumer@host:123"
    assert (task["level"], task["logger"]) == ("INFO", "demo.test")
    assert task["time"].startswith("20")  # ISO 8601
    assert plain == {"level": "WARNING", "logger": "demo.test", "time": plain["time"],
                     "message": "broker localhost:5672 not reachable"}


def test_a_json_line_keeps_a_traceback_and_odd_text_on_one_line(output: io.StringIO) -> None:
    log = configured(output, "json")

    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        task_log(log, "1\nINFO forged line", "w%s").exception("failed: %s", "Ошибка")

    [line] = lines(output)
    # A task number that is not a number is quoted in the text, kept as it came in the field.
    assert line["message"] == "task '1\\nINFO forged line': failed: Ошибка, worker=w%s"
    assert line["task_num"] == "1\nINFO forged line"
    assert "ValueError: bad" in line["exc_info"]


def test_the_text_line_reads_as_it_always_has(output: io.StringIO) -> None:
    log = configured(output, "text")

    task_log(log, 7, "celery@host:9").info("done%s", ", DONE already recorded")
    task_log(log, worker_id="consumer@host:1").info("consuming %s", "test_direct")
    task_log(log, 8).info("published to %s", "test_exchange")

    written = output.getvalue().splitlines()
    assert [line.partition(" demo.test: ")[2] for line in written] == [
        "task 7: done, DONE already recorded, worker=celery@host:9",
        "consuming test_direct, worker=consumer@host:1",
        "task 8: published to test_exchange",
    ]
    assert " INFO demo.test: " in written[0]


def test_fields_given_at_the_call_are_kept_beside_the_tasks(output: io.StringIO) -> None:
    log = configured(output, "json")

    task_log(log, 3).info("sent", extra={"queue": "celery"})

    [line] = lines(output)
    assert (line["task_num"], line["queue"]) == (3, "celery")
    assert "worker_id" not in line
