"""Unit tests of task_lifecycle.py: the one sequence both workers run, with a recording reporter."""

from __future__ import annotations

import pytest

from callback_client import Outcome
from common.messages import TaskMessage
from common.statuses import TaskStatus
from task_lifecycle import Ending, run_task


class RecordingReporter:
    """Answers IN_PROGRESS with ``first_answer``, the rest with ``last_answer``; records every
    report, in order."""

    worker_id = "test@host:1"

    def __init__(
        self, first_answer: Outcome = Outcome.ACCEPTED, last_answer: Outcome = Outcome.ACCEPTED
    ) -> None:
        self.first_answer = first_answer
        self.last_answer = last_answer
        self.reports: list[tuple[int, TaskStatus]] = []
        self.redelivered: list[bool] = []
        self.details: list[dict] = []

    def report(self, task_num: int, status: TaskStatus, **details: object) -> Outcome:
        self.reports.append((task_num, status))
        self.redelivered.append(bool(details.get("redelivered")))
        self.details.append(details)
        return self.first_answer if status is TaskStatus.IN_PROGRESS else self.last_answer


class Work:
    """The simulated work: records how long it was asked to take, ends as told."""

    def __init__(self, finishes: bool = True) -> None:
        self.finishes = finishes
        self.asked: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.asked.append(seconds)
        return self.finishes


def test_a_task_is_reported_in_progress_worked_on_and_reported_done() -> None:
    reporter, work = RecordingReporter(), Work()

    ending = run_task(TaskMessage(7, 2.5), reporter, work)

    assert ending is Ending.DONE
    assert work.asked == [2.5]
    assert reporter.reports == [(7, TaskStatus.IN_PROGRESS), (7, TaskStatus.DONE)]


@pytest.mark.parametrize("answer", [Outcome.ALREADY_FINAL, Outcome.UNKNOWN_TASK])
def test_work_nobody_waits_for_is_skipped(answer: Outcome) -> None:
    reporter, work = RecordingReporter(answer), Work()

    ending = run_task(TaskMessage(7, 2.5), reporter, work)

    assert ending is Ending.SKIPPED
    assert work.asked == []
    assert reporter.reports == [(7, TaskStatus.IN_PROGRESS)]


def test_a_failed_in_progress_report_does_not_stop_the_work() -> None:
    # The API may just be restarting: the result still counts once it is back.
    reporter, work = RecordingReporter(Outcome.UNREACHABLE), Work()

    assert run_task(TaskMessage(7, 1), reporter, work) is Ending.DONE
    assert reporter.reports[-1] == (7, TaskStatus.DONE)


def test_a_task_sent_with_fail_ends_failed_and_leaves_the_error_report_to_the_worker() -> None:
    reporter = RecordingReporter()

    ending = run_task(TaskMessage(7, 0, fail=True), reporter, Work())

    assert ending is Ending.FAILED
    assert reporter.reports == [(7, TaskStatus.IN_PROGRESS)]


def test_work_cut_short_reports_nothing_more() -> None:
    reporter = RecordingReporter()

    ending = run_task(TaskMessage(7, 30), reporter, Work(finishes=False))

    assert ending is Ending.INTERRUPTED
    assert reporter.reports == [(7, TaskStatus.IN_PROGRESS)]


def test_a_redelivery_is_reported_with_the_in_progress_report_only() -> None:
    reporter = RecordingReporter()

    assert run_task(TaskMessage(7, 0), reporter, Work(), redelivered=True) is Ending.DONE
    assert reporter.redelivered == [True, False]


def test_the_try_is_named_on_the_in_progress_and_done_reports() -> None:
    reporter = RecordingReporter()

    run_task(TaskMessage(7, 0), reporter, Work(), attempt=2, max_attempts=4)

    assert [(d["attempt"], d["max_attempts"]) for d in reporter.details] == [(2, 4), (2, 4)]


def test_a_refused_token_means_no_work_and_a_message_kept_for_later() -> None:
    # The API requires a token the worker does not have: nothing it reports would be recorded.
    reporter, work = RecordingReporter(Outcome.UNAUTHORIZED), Work()

    assert run_task(TaskMessage(7, 2.5), reporter, work) is Ending.UNRECORDED
    assert work.asked == []
    assert reporter.reports == [(7, TaskStatus.IN_PROGRESS)]


def test_a_result_the_api_refused_is_not_settled_either() -> None:
    # The token changed while the task ran: DONE is not recorded, so the task must run again.
    reporter = RecordingReporter(last_answer=Outcome.UNAUTHORIZED)

    assert run_task(TaskMessage(7, 1), reporter, Work()) is Ending.UNRECORDED
    assert reporter.reports == [(7, TaskStatus.IN_PROGRESS), (7, TaskStatus.DONE)]


def test_a_result_the_api_could_not_record_runs_again_later() -> None:
    # The API (or its store) was away past the report's retries: the task must not be settled
    # as done while the page still shows it IN_PROGRESS, forever.
    reporter = RecordingReporter(last_answer=Outcome.UNREACHABLE)

    assert run_task(TaskMessage(7, 1), reporter, Work()) is Ending.UNRECORDED


def test_a_done_that_another_delivery_beat_is_logged_as_not_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two deliveries of one message ran at once (at least once); the other reported DONE first.
    reporter = RecordingReporter(last_answer=Outcome.ALREADY_FINAL)

    with caplog.at_level("INFO", logger="task_lifecycle"):
        ending = run_task(TaskMessage(7, 0), reporter, Work())

    assert ending is Ending.DONE  # the message is settled: the task is done either way
    assert "task 7: done, DONE already recorded" in caplog.text
    assert "task 7: done, worker=" not in caplog.text
