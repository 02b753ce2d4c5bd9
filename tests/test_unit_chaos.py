"""make chaos's own logic without a broker: the seeded schedule, the ledger's verdicts, the
table and the picture from a run's JSON."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import pytest

from chaos import ledger, report
from chaos.schedule import COOL_DOWN, WARM_UP, Kind, kinds, schedule
from chaos.stand import with_heartbeat


def test_the_same_seed_gives_the_same_faults_and_another_seed_others() -> None:
    assert schedule(7, 600) == schedule(7, 600)
    assert schedule(7, 600) != schedule(8, 600)


@pytest.mark.parametrize("seconds", [60, 120, 600])
@pytest.mark.parametrize("cluster", [False, True])
def test_every_kind_comes_within_the_window_and_one_kind_never_overlaps_itself(
    seconds: int, cluster: bool
) -> None:
    faults = schedule(3, seconds, cluster)
    assert {fault.kind for fault in faults} == set(kinds(cluster))
    assert all(WARM_UP <= fault.at <= seconds - COOL_DOWN for fault in faults)
    for kind in kinds(cluster):
        same = [fault for fault in faults if fault.kind is kind]
        assert all(earlier.end < later.at for earlier, later in itertools.pairwise(same))


def test_the_cluster_loses_a_node_where_the_native_broker_restarts() -> None:
    assert Kind.BROKER_RESTART in kinds(False) and Kind.NODE_KILL not in kinds(False)
    assert Kind.NODE_KILL in kinds(True) and Kind.BROKER_RESTART not in kinds(True)
    nodes = {fault.target for fault in schedule(5, 600, True) if fault.kind is Kind.NODE_KILL}
    assert nodes <= {"rabbit-1", "rabbit-2", "rabbit-3"}


def test_each_node_of_a_cluster_url_asks_for_the_heartbeat() -> None:
    assert with_heartbeat("amqp://u:p@a:1/v;amqp://u:p@b:2/v", 5) == \
        "amqp://u:p@a:1/v?heartbeat=5;amqp://u:p@b:2/v?heartbeat=5"


def task(number: int, status: str = "DONE", *, method: str = "rmq", fail: bool = False,
         redeliveries: int = 0, took: float = 0.25) -> dict:
    return {"task_num": number, "method": method, "fail": fail, "status": status,
            "redeliveries": redeliveries, "max_attempts": 4 if method == "celery" else None,
            "created_at": 1000.0 + number, "finished_at": 1000.0 + number + took}


LOG = """\
2026-12-02 08:12:49,956 INFO task_lifecycle: task 1: working 0.2 s, worker=consumer@vm:26247
2026-12-02 08:12:50,199 INFO api.json_api: task 1: DONE, worker=consumer@vm:26247
2026-12-02 08:12:50,200 INFO task_lifecycle: task 1: done, worker=consumer@vm:26247
[2026-12-02 08:12:50,080: INFO/ForkPoolWorker-2] task 2: working 0.2 s, worker=celery@vm:27152
[2026-12-02 08:12:55,080: INFO/ForkPoolWorker-1] task 2: working 0.2 s, worker=celery@vm:27153
2026-12-02 08:12:55,299 INFO api.json_api: task 2: DONE, worker=celery@vm:27153
[2026-12-02 08:12:55,300: INFO/ForkPoolWorker-1] task 2: done, worker=celery@vm:27153
2026-12-02 08:12:55,309 INFO api.json_api: task 2: a DONE task cannot become DONE, worker=x
[2026-12-02 08:12:55,310: INFO/ForkPoolWorker-2] task 2: done, DONE already recorded, worker=x
"""


def test_a_clean_ledger_counts_what_ran_again_and_what_was_redelivered() -> None:
    tasks = {1: task(1), 2: task(2, method="celery", redeliveries=1, took=5.5),
             3: task(3, "ERROR", fail=True, took=14.5)}
    book = ledger.check([1, 2, 3], tasks, LOG)
    assert book.problems() == []
    assert (book.accepted, book.done, book.error) == (3, 2, 1)
    # Task 2 worked twice (at least once), and the API refused its second DONE with 409.
    assert book.ran_again == [2] and book.done_twice == []
    assert book.redelivered == [2]
    # Task 3 took longer, waiting out its retries on purpose: the longest is task 2.
    assert book.longest == (2, 5.5)


def test_celery_retries_of_a_task_sent_with_fail_are_not_running_again() -> None:
    failing = task(4, "ERROR", method="celery", fail=True)
    book = ledger.check([4], {4: failing}, "task 4: working 0.2 s\n" * 4)
    assert book.ran_again == [] and book.problems() == []


def test_stuck_lost_unexplained_and_done_twice_each_fail_the_run_naming_the_tasks() -> None:
    tasks = {1: task(1, "IN_PROGRESS"), 2: None, 3: task(3, "ERROR"), 4: task(4, fail=True),
             5: task(5)}
    twice = "INFO api.json_api: task 5: DONE, worker=a\nINFO api.json_api: task 5: DONE, worker=b\n"
    problems = ledger.check([1, 2, 3, 4, 5], tasks, twice).problems()
    assert problems == [
        "1 task(s) not finished (neither DONE nor ERROR): 1",
        "1 task(s) accepted with a 202 but unknown to the store: 2",
        "2 task(s) ended without their reason (ERROR not sent with fail, or DONE sent with it):"
        " 3, 4",
        "1 task(s) recorded DONE more than once: 5",
    ]


RESULTS = {
    "settings": {"seconds": 60, "seed": 1, "rate": 10, "cluster": False, "work": 0.2,
                 "fail_share": 0.05, "heartbeat": 5},
    "started_at": 1000.0,
    "faults": [
        {"kind": "consumer_kill", "target": "consumer:consumer-0", "at": 15.2, "until": 16.0,
         "detail": "pid 1 killed, back as 2", "error": ""},
        {"kind": "broker_restart", "target": "", "at": 20.0, "until": 35.0,
         "detail": "stop_app, start_app", "error": ""},
        {"kind": "pool_kill", "target": "celery_worker:celery_worker-1", "at": 22.0,
         "until": 22.1, "detail": "pool process 3 of 4 killed", "error": ""},
    ],
    "answers": {"202": 3, "503": 1, "0": 1},
    "dropped": 0,
    "requests": [[0.1, 0.02, 202], [0.2, 0.03, 202], [21.0, 2.0, 503], [36.0, 15.0, 0],
                 [40.0, 0.02, 202]],
    "tasks": [[1, "rmq", False, 0.1, 0.35, "DONE", 0, 1],
              [2, "celery", False, 0.2, 30.2, "DONE", 1, 2],
              [3, "rmq", True, 40.0, 40.2, "ERROR", 0, 1]],
    "ledger": {"accepted": 3, "done": 2, "error": 1, "stuck": [], "lost": [], "unexplained": [],
               "done_twice": [], "ran_again": [2], "redelivered": [2], "longest": [2, 30.0],
               "problems": []},
    "unacknowledged": {"finished": [9], "unfinished": [11]},
    "recovered_in": 4.2,
    "settled_in": 9.0,
}


def test_the_table_tells_the_ledger_and_the_faults_by_kind() -> None:
    table = report.markdown(RESULTS)
    assert "seed 1" in table
    assert "| Принято задач (202) | 3 (rmq 2, celery 1) |" in table
    assert "| Выполнены больше одного раза (at-least-once) | 1 |" in table
    assert "| Самая долгая задача конец в конец (без задач с fail) | 30.0 с (задача 2) |" in table
    assert "| брокер: stop_app … start_app | 1 | 15 |" in table
    # Made but never told to a client: task 11 is left PENDING on the page.
    assert "| В хранилище без ответа 202 клиенту: завершены / не завершены | 1 / 1 (11) |" in table
    assert table.rstrip().endswith("Итог: каждая принятая задача учтена.")


def test_a_failed_run_says_so_with_each_problem() -> None:
    failed = copy.deepcopy(RESULTS)
    failed["ledger"]["problems"] = ["1 task(s) not finished (neither DONE nor ERROR): 7"]
    assert "Итог: ПРОВАЛ.\n\n- 1 task(s) not finished" in report.markdown(failed)


def test_the_picture_is_a_png_made_again_from_the_saved_json(tmp_path: Path) -> None:
    path = tmp_path / "chaos.png"
    report.plot(json.loads(json.dumps(RESULTS)), path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
