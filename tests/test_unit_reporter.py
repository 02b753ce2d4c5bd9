"""Unit tests of callback_client.py: what each answer of the API means to a worker, and a
refused token said loudly but once a minute."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from callback_client import REFUSED_LOG_EVERY, Outcome, StatusReporter
from common import routes
from common.settings import Settings
from common.statuses import TaskStatus


class FixedAnswer(BaseHTTPRequestHandler):
    """Answers every POST with the server's ``status``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "..."}')

    def log_message(self, *args) -> None:
        pass  # quiet


@pytest.fixture
def api() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FixedAnswer)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def reporter_of(api: ThreadingHTTPServer, clock=None) -> StatusReporter:
    settings = Settings(callback_url=f"http://127.0.0.1:{api.server_port}{routes.CALLBACK}")
    options = {"clock": clock} if clock else {}
    return StatusReporter(settings, "test@host:1", retries=0, **options)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, Outcome.ACCEPTED), (404, Outcome.UNKNOWN_TASK), (409, Outcome.ALREADY_FINAL),
     (401, Outcome.UNAUTHORIZED), (400, Outcome.FAILED), (503, Outcome.UNREACHABLE)],
)
def test_each_answer_of_the_api_means_one_outcome(api, status: int, outcome: Outcome) -> None:
    api.status = status
    reporter = reporter_of(api)
    try:
        assert reporter.report(7, TaskStatus.IN_PROGRESS) is outcome
    finally:
        reporter.close()


def test_a_refused_token_is_an_error_naming_callback_token_once_a_minute(api, caplog) -> None:
    api.status = 401
    now = [100.0]
    reporter = reporter_of(api, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="callback_client")

    def errors() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    try:
        for task_num in range(1, 6):
            assert reporter.report(task_num, TaskStatus.IN_PROGRESS) is Outcome.UNAUTHORIZED
        [error] = errors()
        assert "CALLBACK_TOKEN" in error and "401" in error
        now[0] += REFUSED_LOG_EVERY - 1
        reporter.report(6, TaskStatus.IN_PROGRESS)
        assert len(errors()) == 1
        now[0] += 1
        reporter.report(7, TaskStatus.IN_PROGRESS)
        assert len(errors()) == 2
    finally:
        reporter.close()
