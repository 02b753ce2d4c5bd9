"""`docker compose up --build` as a student runs it, proven through the ports it publishes.

The tests run in file order on one boot of the single-node demo, its API scaled to three
replicas behind the proxy, with the monitoring profile's Prometheus beside it: each test leaves
the demo running and whole for the next.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Iterator

import aiohttp
import pytest
import requests

from api.catalogue import LONG_REQUEST_SECONDS
from common import topology
from runner.broker import queue_state
from runner.client import ApiClient
from runner.polling import wait_for
from tests.compose.conftest import boot
from tests.compose.load import Load
from tests.compose.stack import COURSE_PASSWORD, COURSE_USER, Stack
from tests.test_live import sse_events
from tests.test_monitoring import CONFIG_IN_IMAGE, DASHBOARD, queries

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

HEALTHY = ("rmq", "redis", "api", "proxy", "prometheus")
API_REPLICAS = 3
# On every `up`: without it, Compose would scale the api back to the file's one replica.
SCALE_API = ("--scale", f"api={API_REPLICAS}")
MONITORING = "monitoring"


@pytest.fixture(scope="module")
def demo(stack: Stack, figures: dict) -> Iterator[Stack]:
    # The monitoring profile joins this boot as it does for a user who exports COMPOSE_PROFILES:
    # every `up` and `down` below then takes Prometheus along with the rest.
    stack.env["COMPOSE_PROFILES"] = MONITORING
    try:
        figures["boot_seconds"] = boot(stack, healthy=HEALTHY, scale={"api": API_REPLICAS})
        yield stack
        stack.save_logs()
        stack.compose("down", "--volumes", "--timeout", "5")
    finally:
        del stack.env["COMPOSE_PROFILES"]


@pytest.fixture
def api(demo: Stack) -> ApiClient:
    return demo.api()


def hosts(tasks: list[dict]) -> set[str]:
    """The containers that ran the tasks: worker ids read ``consumer@<hostname>:<pid>``."""
    return {task["worker_id"].split("@", 1)[1].rsplit(":", 1)[0] for task in tasks}


def up_replicas(demo: Stack) -> dict[str, int]:
    """The api replicas the proxy sends requests to, from its stats page: the requests each
    one has served, by its address."""
    text = requests.get(demo.url("PROXY_STATS_HOST_PORT") + "/;csv", timeout=10).text
    rows = csv.DictReader(text.removeprefix("# ").splitlines())
    return {row["addr"].rsplit(":", 1)[0]: int(row["stot"]) for row in rows
            if row["pxname"] == "api" and row["svname"] != "BACKEND" and row["status"] == "UP"}


def wait_for_the_proxy_to_see_every_replica(demo: Stack) -> None:
    """Until the proxy sends to each running replica and to nothing else (a replica made anew
    has a new address, which the proxy learns from DNS)."""
    wait_for(lambda: set(up_replicas(demo)) == demo.addresses("api"), 60, interval=1.0,
             what="the proxy to send to every replica")


def query(demo: Stack, expression: str) -> float | None:
    """The one value of an instant query, or None while it has none."""
    result = demo.prometheus("query", query=expression)["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def test_every_service_runs_and_the_checked_ones_are_healthy(demo: Stack) -> None:
    containers = demo.containers()
    assert {c["Service"] for c in containers} == {
        "rmq", "redis", "api", "proxy", "consumer", "celery_worker", "celery_beat", "flower",
        "prometheus"}
    assert len([c for c in containers if c["Service"] == "api"]) == API_REPLICAS
    for container in containers:
        assert container["State"] == "running", container
        if container["Service"] in HEALTHY:
            assert container["Health"] == "healthy", container


def test_the_sync_modes_answer_the_short_one_at_once_the_long_one_after_its_wait(
    api: ApiClient,
) -> None:
    short = api.session.get(api.url("/get_sync_data/"), params={"data_id": 12}, timeout=10)
    assert short.status_code == 200 and "Стакан" in short.text
    started = time.monotonic()
    long = api.session.get(api.url("/get_sync_long_data/"), params={"data_id": 10}, timeout=30)
    assert long.status_code == 200 and "Тарелка" in long.text
    # A lower bound only: the lesson is that the answer waits this long.
    assert time.monotonic() - started >= LONG_REQUEST_SECONDS


def test_prometheus_scrapes_every_api_replica_and_flower_and_counts_the_tasks_made(
    demo: Stack, api: ApiClient, figures: dict
) -> None:
    # Prometheus's own check of the mounted file, by the image's promtool.
    checked = demo.compose("exec", "-T", "prometheus", "promtool", "check", "config",
                           CONFIG_IN_IMAGE)
    assert "SUCCESS" in checked, checked
    started = time.monotonic()
    # Each replica by its own address (DNS), Flower by its name; the cluster's jobs have none.
    expected = {("api", f"{address}:8080") for address in demo.addresses("api")}
    expected.add(("flower", "flower:5555"))
    wait_for(lambda: demo.scraped() == expected, 60, interval=1.0,
             what="Prometheus to scrape every api replica and Flower")
    figures["prometheus_targets_up_seconds"] = round(time.monotonic() - started, 1)
    # The first tasks of this boot by RabbitMQ (Beat orders Celery's): the counters of three
    # replicas add up to exactly these.
    sent = api.send("rmq", timeout=0, count=3) + api.send("celery", timeout=0)
    done = api.wait_final([task["task_num"] for task in sent], timeout=60)
    assert {task["status"] for task in done} == {"DONE"}, done
    wait_for(lambda: query(demo, 'sum(api_tasks_accepted_total{method="rmq"})') == 3, 30,
             interval=1.0, what="Prometheus to count the three tasks accepted")
    wait_for(lambda: query(
        demo, 'sum(api_tasks_finished_total{method="rmq", status="DONE"})') == 3, 30,
        interval=1.0, what="Prometheus to count the three tasks done")
    # Flower's figures: the Celery task's events and its worker online.
    wait_for(lambda: (query(demo, 'sum(flower_events_total{type="task-succeeded"})') or 0) >= 1,
             30, interval=1.0, what="Flower's task events in Prometheus")
    wait_for(lambda: query(demo, "min(flower_worker_online)") == 1, 30, interval=1.0,
             what="Flower's worker online in Prometheus")


def test_every_query_of_the_dashboard_is_one_prometheus_answers(demo: Stack) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for expression in queries(dashboard):
        # A query Prometheus cannot parse or evaluate is answered 400 with its error.
        demo.prometheus("query", query=expression)


def test_both_async_modes_finish_and_a_failing_task_is_dead_lettered(
    demo: Stack, api: ApiClient
) -> None:
    sent = api.send("rmq", timeout=0.5) + api.send("celery", timeout=0.5)
    done = api.wait_final([task["task_num"] for task in sent], timeout=60)
    assert [task["status"] for task in done] == ["DONE", "DONE"], done
    assert done[0]["worker_id"].startswith("consumer@")
    assert done[1]["worker_id"].startswith("celery@")

    [failing] = api.send("rmq", timeout=0, fail=True)
    [failed] = api.wait_final([failing["task_num"]], timeout=60)
    assert failed["status"] == "ERROR"
    wait_for(lambda: queue_state(demo.amqp_url(), topology.DEAD_LETTER_QUEUE)[0] == 1, 20,
             what="the failed message in the dead-letter queue")


def test_flower_lists_the_worker_and_the_management_ui_takes_the_course_login(
    demo: Stack,
) -> None:
    [worker] = demo.containers("celery_worker")
    # Celery names the node after the container's hostname, its short id.
    wait_for(lambda: worker["ID"][:12] in requests.get(demo.url("FLOWER_HOST_PORT") + "/workers",
                                                      timeout=10).text,
             60, interval=1.0, what="Flower to list the Celery worker")
    management = demo.url("RMQ_MANAGEMENT_HOST_PORT") + "/api/whoami"
    whoami = requests.get(management, auth=(COURSE_USER, COURSE_PASSWORD), timeout=10)
    assert whoami.status_code == 200 and whoami.json()["name"] == COURSE_USER
    assert requests.get(management, auth=(COURSE_USER, "wrong"), timeout=10).status_code == 401


async def test_the_proxy_spreads_requests_over_the_replicas_and_streams_the_live_page(
    demo: Stack,
) -> None:
    wait_for_the_proxy_to_see_every_replica(demo)
    before = up_replicas(demo)
    url = demo.url("API_HOST_PORT")
    async with aiohttp.ClientSession() as session, session.get(f"{url}/api/events") as stream:
        events = sse_events(stream)
        kind, _ = await anext(events)
        assert kind == "snapshot"
        # The stream is on one replica; the tasks are made on all of them in turn, and the
        # workers report to any: the page hears it all, as each change happens.
        sent: set[int] = set()
        for _ in range(2 * API_REPLICAS):
            async with session.post(f"{url}/api/tasks",
                                    json={"method": "rmq", "timeout": 0.1}) as answer:
                assert answer.status == 202
                sent |= {task["task_num"] for task in (await answer.json())["tasks"]}
        done: set[int] = set()
        async with asyncio.timeout(60):
            async for kind, data in events:
                if kind == "tasks":
                    done |= {task["task_num"] for task in data if task.get("status") == "DONE"}
                if done >= sent:
                    break
    after = up_replicas(demo)
    assert set(after) == set(before)
    assert all(after[replica] > before[replica] for replica in after), (before, after)


def test_behind_the_proxy_the_origin_check_sees_the_browsers_own_origin(api: ApiClient) -> None:
    body = {"method": "rmq", "timeout": 0}
    own = api.session.post(api.url("/api/tasks"), json=body, timeout=10,
                           headers={"Origin": api.url("")})
    assert own.status_code == 202, own.text
    foreign = api.session.post(api.url("/api/tasks"), json=body, timeout=10,
                               headers={"Origin": "http://attacker.example"})
    assert foreign.status_code == 403 and "ALLOWED_HOSTS" in foreign.json()["error"]


def test_scaled_workers_share_a_batch(demo: Stack, api: ApiClient) -> None:
    demo.up(*SCALE_API, "--scale", "celery_worker=3", "--scale", "consumer=2")
    # Every replica has its connection and its consumer on the queue before the batch goes out.
    wait_for(lambda: queue_state(demo.amqp_url(), topology.QUEUE)[1] == 2, 120, interval=1.0,
             what="two consumers on the queue")
    wait_for(lambda: queue_state(demo.amqp_url(), topology.CELERY_QUEUE)[1] == 3, 120,
             interval=1.0, what="three Celery workers on their queue")
    # More tasks than one replica's prefetch (3), each long enough to keep it busy.
    sent = api.send("rmq", timeout=1, count=12) + api.send("celery", timeout=1, count=18)
    done = api.wait_final([task["task_num"] for task in sent], timeout=120)
    assert {task["status"] for task in done} == {"DONE"}
    assert len(hosts(done[:12])) == 2, done[:12]
    assert len(hosts(done[12:])) >= 2, done[12:]
    demo.up(*SCALE_API, "--scale", "celery_worker=1", "--scale", "consumer=1")


@pytest.mark.parametrize(("service", "method"), [("consumer", "rmq"), ("celery_worker", "celery")])
def test_a_worker_killed_mid_task_is_restarted_by_its_policy_and_the_task_finishes(
    demo: Stack, api: ApiClient, service: str, method: str
) -> None:
    [container] = demo.wait_running(service, 1)
    [task] = api.send(method, timeout=5)
    wait_for(lambda: api.task(task["task_num"])["status"] == "IN_PROGRESS", 60,
             what="the task to start")
    killed = demo.kill_process(container["Name"])
    # The same container comes back (restart: unless-stopped) with a new process.
    wait_for(lambda: demo.containers(service)[0]["State"] == "running"
             and demo.process_pid(container["Name"]) != killed,
             60, interval=0.5, what=f"{service} restarted by its policy")
    [done] = api.wait_final([task["task_num"]], timeout=120)
    assert done["status"] == "DONE", done


def test_an_api_replica_killed_under_load_costs_no_accepted_task_while_the_proxy_answers(
    demo: Stack, api: ApiClient, figures: dict
) -> None:
    [victim, *_] = [c["Name"] for c in demo.wait_running("api", API_REPLICAS)]
    started = demo.started_at(victim)
    with Load(api, pause=0.1) as load:
        wait_for(lambda: len(load.accepted) >= 10, 30, what="the load to be accepted")
        demo.kill_process(victim)
        killed_at = time.monotonic()
        wait_for(lambda: demo.started_at(victim) != started, 60, interval=0.5,
                 what="the replica restarted by its policy")
        demo.wait_running("api", API_REPLICAS)
        back_at = time.monotonic()
    # The one request the replica held when it died may be lost with it: no other. Meanwhile
    # the proxy sent every request to the replicas still there. (How many there were depends on
    # how fast the replica came back and the machine answered: any, all accepted.)
    assert len(load.refused) <= 1, load.refused
    meanwhile = load.answered_between(killed_at + 1.0, back_at)
    assert meanwhile and all(meanwhile), meanwhile
    figures["api_replica_gone"] = {"seconds": round(back_at - killed_at, 1),
                                   "answered_meanwhile": len(meanwhile),
                                   "refused": len(load.refused)}
    done = api.wait_final(load.accepted, timeout=120)
    assert {task["status"] for task in done} == {"DONE"}, [t for t in done if t["status"] != "DONE"]


def test_a_restart_of_every_api_replica_keeps_every_status_and_the_count(
    demo: Stack, api: ApiClient, figures: dict
) -> None:
    sent = api.send("rmq", timeout=0.1, count=10) + api.send("celery", timeout=0.1, count=10)
    finished = api.wait_final([task["task_num"] for task in sent], timeout=60)
    restarted_at = time.monotonic()
    demo.compose("restart", "api")
    # The replicas stop together: until one is back, the proxy has none to send to (503).
    wait_for(lambda: api.session.get(api.url("/healthz"), timeout=10).status_code == 200, 60,
             interval=0.2, what="the proxy to answer again")
    figures["api_restart_seconds"] = round(time.monotonic() - restarted_at, 1)
    demo.wait_running("api", API_REPLICAS)
    # The statuses live in Redis, not in the processes that were restarted.
    assert [api.task(task["task_num"]) for task in finished] == finished
    [after] = api.send("rmq", timeout=0.1)
    assert after["task_num"] > max(task["task_num"] for task in finished)
    [done] = api.wait_final([after["task_num"]], timeout=60)
    assert done["status"] == "DONE", done


def test_a_broker_restart_with_tasks_queued_loses_none(demo: Stack, api: ApiClient) -> None:
    sent = api.send("rmq", timeout=0.2, count=100) + api.send("celery", timeout=0.2, count=30)
    assert queue_state(demo.amqp_url(), topology.QUEUE)[0] > 0, "the tasks were drained already"
    demo.compose("restart", "rmq")
    done = api.wait_final([task["task_num"] for task in sent], timeout=240)
    assert {task["status"] for task in done} == {"DONE"}, [t for t in done if t["status"] != "DONE"]


def test_down_and_up_keep_the_waiting_messages_the_tasks_and_the_task_counter(
    demo: Stack, api: ApiClient
) -> None:
    [finished] = api.wait_final([api.send("rmq", timeout=0)[0]["task_num"]], timeout=60)
    demo.compose("stop", "consumer")
    waiting = api.send("rmq", timeout=0.1, count=5)
    wait_for(lambda: queue_state(demo.amqp_url(), topology.QUEUE)[0] == 5, 20,
             what="five messages waiting")
    demo.compose("down")
    # Back without its consumers, so the messages stay where down left them.
    demo.up(*SCALE_API, "--scale", "consumer=0")
    demo.wait_running("api", API_REPLICAS, timeout=180)
    demo.wait_running("proxy", 1)
    assert queue_state(demo.amqp_url(), topology.QUEUE)[0] == 5
    # Redis kept the tasks on its volume: the finished one, the waiting ones, the counter.
    again = demo.api()
    assert again.task(finished["task_num"]) == finished
    [after] = again.send("rmq", timeout=0.1)
    assert after["task_num"] == waiting[-1]["task_num"] + 1
    demo.up(*SCALE_API, "--scale", "consumer=1")
    done = again.wait_final([task["task_num"] for task in [*waiting, after]], timeout=60)
    assert {task["status"] for task in done} == {"DONE"}, done


def test_behind_the_proxy_the_rate_limit_counts_each_client_apart(
    demo: Stack, api: ApiClient
) -> None:
    # The replicas made anew with a limit; --no-deps: the broker and Redis stay as they are.
    demo.compose("up", "--detach", "--no-deps", "--force-recreate", *SCALE_API, "api",
                 env={"RATE_LIMIT": "3/minute"})
    demo.wait_running("api", API_REPLICAS)
    wait_for_the_proxy_to_see_every_replica(demo)

    def login(headers: dict[str, str]) -> int:
        # A route the limit counts; without API_TOKEN it only sends the browser to the page.
        return api.session.post(api.url("/login"), headers=headers, allow_redirects=False,
                                timeout=10).status_code

    # This machine, through the proxy: each replica lets 3 through, then refuses. A header of
    # the client's own, new each time, changes nothing: the proxy writes the one the API reads.
    # (A replica's first request from the proxy may count as the proxy's own: it looks the
    # proxy's name up only then, in the background.)
    before = up_replicas(demo)
    statuses = [login({"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(6 * API_REPLICAS)]
    # The replicas that answered them, as the proxy counts.
    served = sum(1 for address, count in up_replicas(demo).items() if count > before[address])
    assert 3 * served <= statuses.count(303) <= 4 * served, (served, str(statuses))
    assert set(statuses) == {303, 429}, str(statuses)
    # Another client, the consumer's container, has its own count on every replica.
    other = demo.compose(
        "exec", "-T", "consumer", "python", "-c",
        "import http.client; c = http.client.HTTPConnection('proxy', 8080, timeout=10);"
        " c.request('POST', '/login'); print(c.getresponse().status)",
    )
    assert other.split() == ["303"]
