"""The live page in a real browser: Debian's chromium, driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium (`make browser`
installs it). The tests are plain synchronous functions, so Playwright's sync API runs with no
asyncio loop of pytest's around it. They wait with ``expect(...)`` and explicit timeouts, never
with a fixed sleep, and every test fails if the page logged an error to the console.

``LIVE_SCREENSHOT=docs/screenshot.png pytest tests/test_browser.py -k screenshot`` also saves
the picture of the page that the README shows (docs/screenshot.png) (alone, so that the table holds only its tasks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import time
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from common import routes, topology
from common.settings import address
from runner.broker import purge
from runner.client import ApiClient
from runner.services import free_port

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SECOND = 1000  # Playwright counts in milliseconds
LAPTOP = {"width": 1400, "height": 1000}
# Where no column of a table may be cut: a laptop's window, and a projector's full HD.
WINDOWS = {"laptop": {"width": 1400, "height": 900}, "projector": {"width": 1920, "height": 1080}}

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="needs Debian's chromium (make browser)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def console_errors() -> list[str]:
    """What the page logs as errors; a test removes the ones it caused on purpose."""
    return []


@pytest.fixture
def viewport() -> dict[str, int]:
    """A laptop's window; a test parametrizes ``viewport`` to look at the page on a phone."""
    return LAPTOP


@pytest.fixture
def page(browser: Browser, api: ApiClient, console_errors: list[str],
         viewport: dict[str, int]) -> Iterator[Page]:
    """The home page, live (its event stream connected), failing the test on any console error."""
    with live_page(browser, api.base_url, console_errors, viewport=viewport) as page:
        yield page


@contextlib.contextmanager
def live_page(
    browser: Browser,
    base_url: str,
    console_errors: list[str],
    stream_state: str = "live",
    viewport: dict[str, int] | None = None,
) -> Iterator[Page]:
    """The home page of the demo at ``base_url``, its event stream in ``stream_state`` (live);
    fails on any console error."""
    context = browser.new_context(base_url=base_url, viewport=viewport or LAPTOP)
    page = context.new_page()
    page.on("console",
            lambda message: message.type == "error" and console_errors.append(message.text))
    page.on("pageerror", lambda error: console_errors.append(f"uncaught: {error}"))
    page.goto("/")
    expect(page.locator("#stream-state")).to_have_attribute("data-state", stream_state,
                                                           timeout=10 * SECOND)
    # Survives only as long as the document does: proof that nothing below reloads the page.
    page.evaluate("window.sameDocument = true")
    yield page
    still_same = page.evaluate("window.sameDocument === true")
    context.close()
    assert console_errors == [], "the page logged errors"
    assert still_same, "the page was reloaded"


def row(page: Page, task_num: int) -> Locator:
    return page.locator(f'#task-rows tr[data-task="{task_num}"]')


def sent_numbers(answer_text: str) -> list[int]:
    """The task numbers in "Отправлено через RabbitMQ: №5–7" (or "№5")."""
    match = re.search(r"№(\d+)(?:–(\d+))?", answer_text)
    first = int(match.group(1))
    last = int(match.group(2) or first)
    return list(range(first, last + 1))


def test_tasks_from_another_client_appear_and_finish(page: Page, api: ApiClient, consumer,
                                                     celery_worker) -> None:
    tasks = api.send("rmq", timeout=1.5) + api.send("celery", timeout=0.3, count=2)
    rmq_num = tasks[0]["task_num"]
    # The RabbitMQ task is seen running, on the workers panel too, then done.
    expect(row(page, rmq_num)).to_have_attribute("data-status", "IN_PROGRESS", timeout=10 * SECOND)
    expect(page.locator('#worker-list li[data-busy="true"]', has_text=f"№{rmq_num}")).to_be_visible(
        timeout=5 * SECOND)
    for task in tasks:
        expect(row(page, task["task_num"])).to_have_attribute("data-status", "DONE",
                                                              timeout=20 * SECOND)
    rmq_row = row(page, rmq_num)
    expect(rmq_row.locator(".badge")).to_have_text("RabbitMQ")
    expect(rmq_row.locator("td.worker")).to_contain_text("consumer@")
    expect(rmq_row.locator("td").last).to_have_text(re.compile(r"^\d+\.\d с$"))
    expect(row(page, tasks[1]["task_num"]).locator(".badge")).to_have_text("Celery")


def test_a_page_of_one_api_process_shows_what_two_others_made_and_recorded(
    browser: Browser, console_errors: list[str], fresh_settings, own_services, own_redis
) -> None:
    # Three API processes on one task store in Redis: the task is made through the first, its
    # worker reports to the second, the page is connected to the third.
    shared = dataclasses.replace(fresh_settings, task_store=own_redis.url)
    made, reported, shown = (
        own_services.start_api(dataclasses.replace(shared, api_port=port))
        for port in (shared.api_port, free_port(), free_port())
    )
    own_services.start_workers(
        "consumer", dataclasses.replace(shared, callback_url=reported.url(routes.CALLBACK))
    )
    with live_page(browser, shown.base_url, console_errors) as page:
        [task] = made.send("rmq", timeout=1)

        expect(row(page, task["task_num"])).to_have_attribute("data-status", "DONE",
                                                              timeout=20 * SECOND)
        expect(row(page, task["task_num"]).locator("td.worker")).to_contain_text("consumer@")
        expect(page.locator("#worker-list li", has_text="consumer@")).to_be_visible()


@pytest.mark.parametrize(("form", "label"), [("rmq", "RabbitMQ"), ("celery", "Celery")])
def test_page_forms_send_a_batch_without_a_reload(page: Page, consumer, celery_worker, form,
                                                  label) -> None:
    card = page.locator(f"form[data-form={form}]")
    card.locator("input[name=processing_timeout]").fill("0.3")
    card.locator("input[name=count]").fill("3")
    card.get_by_role("button").click()
    answer = card.locator(".form-answer")
    expect(answer).to_have_text(re.compile(rf"^Отправлено через {label}: №\d+–\d+$"),
                                timeout=10 * SECOND)
    numbers = sent_numbers(answer.inner_text())
    assert len(numbers) == 3
    for number in numbers:
        expect(row(page, number)).to_have_attribute("data-status", "DONE", timeout=20 * SECOND)
    assert page.url.endswith("/")  # no redirect, no ?sent=...


def test_page_form_shows_the_servers_complaint(page: Page, console_errors: list[str]) -> None:
    card = page.locator("form[data-form=rmq]")
    card.locator("input[name=processing_timeout]").fill("<b>abc</b>")
    card.get_by_role("button").click()
    expect(card.locator(".form-answer")).to_have_text(re.compile("^Время обработки: "))
    expect(card.locator("input[name=processing_timeout]")).to_have_attribute("aria-invalid", "true")
    # Chrome logs every 4xx answer to fetch() by itself; this one is the point of the test.
    console_errors.remove(
        "Failed to load resource: the server responded with a status of 400 (Bad Request)")


def test_failed_task_is_replayed_from_the_dead_letter_panel(page: Page, consumer, settings) -> None:
    purge(settings.rmq_url, topology.DEAD_LETTER_QUEUE)
    card = page.locator("form[data-form=rmq]")
    card.locator("input[name=processing_timeout]").fill("0.2")
    card.locator("input[name=fail]").check()
    card.get_by_role("button").click()
    expect(card.locator(".form-answer")).to_contain_text("Отправлено", timeout=10 * SECOND)
    [doomed] = sent_numbers(card.locator(".form-answer").inner_text())
    expect(row(page, doomed)).to_have_attribute("data-status", "ERROR", timeout=20 * SECOND)

    dead = page.locator(f'#dead-list li[data-task="{doomed}"]')
    expect(dead).to_contain_text("rejected в test_direct", timeout=15 * SECOND)
    page.locator("#replay-dead").click()
    answer = page.locator("#dead-answer")
    expect(answer).to_contain_text(f"№{doomed} → №", timeout=15 * SECOND)
    replay_num = int(re.search(rf"№{doomed} → №(\d+)", answer.inner_text()).group(1))
    expect(row(page, replay_num)).to_have_attribute("data-status", "DONE", timeout=20 * SECOND)
    expect(row(page, replay_num).locator("small.replay")).to_have_text(f"повтор №{doomed}")
    expect(dead).to_have_count(0, timeout=10 * SECOND)


def test_the_queues_panel_purges_a_work_queue_once_confirmed(
    browser: Browser, fresh_settings, own_services, console_errors: list[str]
) -> None:
    api = own_services.start_api(fresh_settings)  # no workers: the tasks wait in test_direct
    numbers = [task["task_num"] for task in api.send("rmq", timeout=3, count=5)]
    with live_page(browser, api.base_url, console_errors) as page:
        for number in numbers:
            expect(row(page, number)).to_have_attribute("data-status", "PENDING")
        # The node of RMQ_URL the API publishes through (with a cluster, it moves on a loss).
        node = address(fresh_settings.rmq_urls[0])
        expect(page.locator("#queues-node")).to_have_text(f"API публикует через узел {node}")
        purge_button = page.locator(f'#queue-rows tr[data-queue="{topology.QUEUE}"] button')
        questions: list[str] = []
        page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
        purge_button.click(timeout=10 * SECOND)  # the panel shows it once the 5 are counted
        assert topology.QUEUE in questions[0]
        expect(row(page, numbers[0])).to_have_count(1)  # cancelled: nothing happened
        page.once("dialog", lambda dialog: dialog.accept())
        purge_button.click()
        expect(page.locator("#queues-answer")).to_have_text(
            f"Очередь {topology.QUEUE}: удалено сообщений — 5, задач убрано из таблицы — 5.")
        for number in numbers:
            expect(row(page, number)).to_have_count(0)
        expect(purge_button).to_have_count(0, timeout=5 * SECOND)  # nothing left to purge


def test_a_page_over_the_stream_limit_says_so_instead_of_spinning(
    browser: Browser, fresh_settings, own_services, console_errors: list[str]
) -> None:
    api = own_services.start_api(dataclasses.replace(fresh_settings, live_stream_limit=1))
    with requests.get(api.url("/api/events"), stream=True, timeout=10) as first_tab:
        assert next(first_tab.iter_lines()) == b"event: snapshot"
        with live_page(browser, api.base_url, console_errors, stream_state="refused") as page:
            state = page.locator("#stream-state")
            expect(state).to_contain_text("Слишком много открытых вкладок")
            expect(state).to_contain_text("LIVE_STREAM_LIMIT")
            # Chrome logs the refused stream and the page's look at why (both 503) by itself.
            console_errors[:] = [e for e in console_errors if "status of 503" not in e]


def test_forms_work_without_javascript(browser: Browser, api: ApiClient, consumer) -> None:
    context = browser.new_context(base_url=api.base_url, java_script_enabled=False)
    page = context.new_page()
    page.goto("/")
    card = page.locator("form[data-form=rmq]")
    card.locator("input[name=processing_timeout]").fill("0.2")
    card.locator("input[name=count]").fill("2")
    card.get_by_role("button").click()
    # A plain POST, a 303 redirect back, and the message from the redirect's query.
    notice = re.compile(r"^Отправлено через RabbitMQ: №\d+–\d+$")
    expect(page.locator(".notice")).to_have_text(notice)
    assert "sent=rmq" in page.url
    page.locator("#sync form").get_by_role("button").click()
    expect(page.locator("#sync-result")).to_contain_text("Тарелка")
    context.close()


# The «Сломайте» tour: one scenario each, and the command to run natively and in Docker.
TOUR = {
    "consumer": ("./ctl signal KILL consumer:consumer-0", "docker compose kill -s KILL consumer"),
    "celery-pool": ("ps --ppid $(./ctl pid celery_worker:celery_worker-0)",
                    "docker compose exec celery_worker sh -c 'kill -9 <pid>'"),
    "celery-worker": ("kill -9 -- -$(./ctl pid celery_worker:celery_worker-0)",
                      "docker compose kill -s KILL celery_worker"),
    "broker": ("sudo rabbitmqctl stop_app", "docker compose exec rmq rabbitmqctl stop_app"),
    "api": ("./ctl restart api", "docker compose restart api"),
    "cluster-node": ("./rmq/cluster.sh status",
                     "docker compose --profile cluster kill -s KILL rmq-1"),
}


def test_break_it_tour_shows_each_scenario_with_its_commands(page: Page) -> None:
    tour = page.locator("#break-it")
    expect(tour.locator("h2")).to_have_text("Сломайте")
    expect(tour.locator("details.scenario")).to_have_count(len(TOUR) + 1)
    for name, (native, docker) in TOUR.items():
        scenario = tour.locator(f'details[data-scenario="{name}"]')
        # Closed, it shows only its title; opened, its commands and what to watch for.
        expect(scenario.locator("pre").first).to_be_hidden()
        scenario.locator("summary").click()
        expect(scenario.locator('pre[data-run="native"]')).to_contain_text(native)
        expect(scenario.locator('pre[data-run="docker"]')).to_contain_text(docker)
        expect(scenario).to_contain_text("Что видно.")
    poison = tour.locator('details[data-scenario="poison"]')
    poison.locator("summary").click()
    expect(poison).to_contain_text("Exchanges → to_direct → Publish message")
    expect(poison.get_by_role("link", name="Панель RabbitMQ")).to_have_attribute(
        "href", re.compile(r"^http://.+:15672/$"))
    # The page only shows commands: the tour has no button or form that could run one.
    expect(tour.locator("button, form")).to_have_count(0)


@pytest.mark.parametrize("viewport", [PHONE])
def test_page_fits_a_phone_with_the_whole_tour_open(page: Page, viewport: dict[str, int]) -> None:
    # The panels filled in by the script count too: they are what a phone scrolls through.
    expect(page.locator("#queue-rows tr")).to_have_count(3, timeout=10 * SECOND)
    page.locator("#break-it details").evaluate_all("all => all.forEach(d => d.open = true)")
    expect(page.locator('#break-it pre[data-run="native"]').first).to_be_visible()
    page_width = page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= viewport["width"], "the page scrolls sideways on a phone"
    # A long command scrolls inside its own box instead of widening the page.
    for box in page.locator("#break-it pre").all():
        assert box.bounding_box()["x"] + box.bounding_box()["width"] <= viewport["width"]


def watch_heartbeat(page: Page) -> None:
    """Record in the page every state the heartbeat passes through."""
    page.evaluate("""() => {
        const heartbeat = document.getElementById("heartbeat");
        window.heartbeatStates = new Set([heartbeat.dataset.state]);
        new MutationObserver(() => window.heartbeatStates.add(heartbeat.dataset.state))
            .observe(heartbeat, {attributes: true, attributeFilter: ["data-state"]});
    }""")


def ask_long(page: Page, blocking: str):
    form = page.locator("#sync-long form")
    form.locator("select[name=blocking]").select_option(blocking)
    form.get_by_role("button").click()
    return form.locator(".form-answer")


def test_heartbeat_beats_on_while_asyncio_sleep_waits(page: Page) -> None:
    heartbeat = page.locator("#heartbeat")
    expect(heartbeat).to_have_attribute("data-state", "ok", timeout=5 * SECOND)
    watch_heartbeat(page)
    beats = int(heartbeat.get_attribute("data-beats"))
    answer = ask_long(page, blocking="0")
    expect(answer).to_have_attribute("data-kind", "wait")
    # Three seconds of beats while the seven-second request is still waiting.
    # A function, not a string: the page's Content-Security-Policy forbids evaluating strings.
    page.wait_for_function(
        "least => Number(document.getElementById('heartbeat').dataset.beats) >= least",
        arg=beats + 6,
        timeout=5 * SECOND,
    )
    expect(answer).to_have_attribute("data-kind", "wait")
    expect(answer).to_contain_text("цикл событий был свободен", timeout=12 * SECOND)
    assert "stalled" not in page.evaluate("[...window.heartbeatStates]")


def test_heartbeat_stalls_while_time_sleep_blocks_the_server(page: Page) -> None:
    heartbeat = page.locator("#heartbeat")
    expect(heartbeat).to_have_attribute("data-state", "ok", timeout=5 * SECOND)
    answer = ask_long(page, blocking="1")
    expect(heartbeat).to_have_attribute("data-state", "stalled", timeout=5 * SECOND)
    expect(heartbeat).to_contain_text("сервер не отвечает")
    expect(answer).to_contain_text("цикл событий был заблокирован", timeout=12 * SECOND)
    expect(heartbeat).to_have_attribute("data-state", "ok", timeout=5 * SECOND)


def test_screenshot_of_tasks_in_every_status(page: Page, api: ApiClient, consumer,
                                             celery_worker) -> None:
    finished = api.send("celery", timeout=0.2, count=2) + api.send("rmq", timeout=0.2, fail=True)
    for task in finished:
        expect(row(page, task["task_num"])).to_have_attribute(
            "data-status", re.compile("DONE|ERROR"), timeout=20 * SECOND)
    expect(page.locator(f'#dead-list li[data-task="{finished[-1]["task_num"]}"]')).to_be_visible(
        timeout=10 * SECOND)
    # The consumer takes three at a time (prefetch 3): the fourth waits in the queue.
    running = api.send("rmq", timeout=3, count=4) + api.send("celery", timeout=3)
    # Celery's lessons in the picture too: a retry counting down, and a chain.
    running += api.send("celery", timeout=0, fail=True)
    chain = api.session.post(api.url("/api/workflows"), timeout=10,
                             json={"kind": "chain", "count": 2, "timeout": 2})
    running += chain.json()["tasks"]
    expect(page.locator("#task-rows small.tries").first).to_be_visible(timeout=10 * SECOND)
    for status in ("PENDING", "IN_PROGRESS", "DONE", "ERROR"):
        expect(page.locator(f'#task-rows tr[data-status="{status}"]').first).to_be_visible(
            timeout=10 * SECOND)
    # Every queue has figures (a new queue has none for a few seconds).
    no_figures_yet = page.locator("#queue-rows td.number", has_text="…")
    expect(no_figures_yet).to_have_count(0, timeout=15 * SECOND)
    expect(page.locator("#queue-rows tr")).to_have_count(3)
    path = os.environ.get("LIVE_SCREENSHOT")
    if path:
        # The tasks and the panels, the heartbeat pinned in the corner; under 300 KB.
        page.locator(".live").evaluate("live => live.scrollIntoView()")
        page.screenshot(path=path, animations="disabled")
    # Leave the shared workers idle for the next test.
    api.wait_final([task["task_num"] for task in running], timeout=60)


def test_a_celery_retry_counts_down_and_the_task_is_seen_through_celerys_eyes(
    page: Page, api: ApiClient, celery_worker
) -> None:
    [task] = api.send("celery", timeout=0, fail=True)
    status = row(page, task["task_num"]).locator("td").nth(2)
    # Live, while the retry waits: which try comes next and in how many seconds.
    expect(status).to_contain_text(re.compile(r"попытка 2 из 4, следующая через \d с"),
                                   timeout=10 * SECOND)
    row(page, task["task_num"]).get_by_role("button", name=str(task["task_num"])).click()
    view = page.locator("#celery-view")
    expect(view).to_be_visible()
    expect(view.locator("[data-field=celery_state]")).to_have_text("RETRY", timeout=5 * SECOND)
    # After the last retry: ERROR here, FAILURE in Celery, with the tries used.
    expect(status).to_contain_text("после 4 попыток", timeout=30 * SECOND)
    expect(view.locator("[data-field=celery_state]")).to_have_text("FAILURE", timeout=5 * SECOND)
    expect(view.locator("[data-field=attempts]")).to_have_text("4 из 4")


def test_the_workflow_form_runs_a_chain_shown_in_the_table(page: Page, celery_worker) -> None:
    form = page.locator("form.workflow-form")
    form.locator("select[name=kind]").select_option("chain")
    form.locator("input[name=count]").fill("2")
    form.locator("input[name=timeout]").fill("0.2")
    form.get_by_role("button").click()
    answer = form.locator(".form-answer")
    expect(answer).to_have_text(re.compile(r"^цепочка: №\d+–\d+$"), timeout=10 * SECOND)
    first, second = sent_numbers(answer.inner_text())
    expect(row(page, second).locator("small.workflow")).to_have_text(f"цепочка · после №{first}")
    for task_num in (first, second):
        expect(row(page, task_num)).to_have_attribute("data-status", "DONE", timeout=20 * SECOND)


# ---------------------------------------------------------------- the first screen


def test_a_first_visit_says_what_to_click_until_the_hint_is_closed(page: Page, settings) -> None:
    hint = page.locator("#first-visit")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("нажмите «Отправить в Celery»")
    # Celery Beat's task is announced before it turns up in the table by itself.
    expect(hint).to_contain_text(f"Каждые {settings.beat_interval} с в таблице сама появляется")
    hint.get_by_role("button", name="Понятно, скрыть").click()
    expect(hint).to_be_hidden()
    # Remembered in this browser: the next visit starts without the hint.
    later = page.context.new_page()
    later.goto("/")
    expect(later.locator("#stream-state")).to_have_attribute("data-state", "live",
                                                            timeout=10 * SECOND)
    expect(later.locator("#first-visit")).to_be_hidden()
    later.close()


def test_the_page_announces_celery_beats_task_at_the_interval_of_the_settings(
    browser: Browser, fresh_settings, own_services, console_errors: list[str]
) -> None:
    api = own_services.start_api(dataclasses.replace(fresh_settings, beat_interval=45))
    with live_page(browser, api.base_url, console_errors) as page:
        # Above the table too, where it stays once the first-visit hint is closed.
        expect(page.locator("#beat-note")).to_contain_text("Каждые 45 с Celery Beat")
        expect(page.locator("#first-visit")).to_contain_text("Каждые 45 с")


def test_the_four_modes_read_in_order_on_one_row_and_the_canvas_follows(page: Page) -> None:
    modes = page.locator(".modes > section")
    expect(modes.locator("h2")).to_have_text([re.compile(rf"^{n}\. ") for n in (1, 2, 3, 4)])
    boxes = [mode.bounding_box() for mode in modes.all()]
    assert len({box["y"] for box in boxes}) == 1, "the modes wrap onto a second row"
    assert [box["x"] for box in boxes] == sorted(box["x"] for box in boxes)
    assert boxes[-1]["x"] + boxes[-1]["width"] <= LAPTOP["width"]
    canvas = page.locator("#workflows").bounding_box()
    assert canvas["y"] >= max(box["y"] + box["height"] for box in boxes), "canvas among the modes"


# Docker's host name (a container's 12-character id) and Linux's largest pid: a worker's name
# as long as the demo's own workers make it.
WIDEST_HOST = "0123456789ab:4194304"


def play_the_widest_rows(api: ApiClient) -> list[int]:
    """Tasks whose rows are as wide as they get, the test playing their workers: a RabbitMQ task
    delivered twice, a Celery task waiting for its second try, a chain's second task."""
    [rmq] = api.send("rmq", timeout=20)
    [celery] = api.send("celery", timeout=20)
    chain = api.session.post(api.url("/api/workflows"), timeout=10,
                             json={"kind": "chain", "count": 2, "timeout": 2}).json()["tasks"]
    reports = [
        {"task_num": rmq["task_num"], "task_status": "IN_PROGRESS", "redelivered": True,
         "worker_id": f"consumer@{WIDEST_HOST}"},
        {"task_num": rmq["task_num"], "task_status": "IN_PROGRESS", "redelivered": True,
         "worker_id": f"consumer@{WIDEST_HOST}"},
        {"task_num": celery["task_num"], "task_status": "IN_PROGRESS", "attempt": 1,
         "max_attempts": 4, "next_try_at": time.time() + 60, "worker_id": f"celery@{WIDEST_HOST}"},
    ]
    for report in reports:
        answer = api.session.post(api.url("/update_task_status_api/"), json=report, timeout=5)
        assert answer.status_code == 200, answer.text
    return [rmq["task_num"], celery["task_num"], chain[-1]["task_num"]]


def cut_columns(page: Page, table: str) -> list[str]:
    """The columns of ``table`` not shown whole: past the box it scrolls in, or past the window."""
    return page.locator(table).evaluate("""table => {
        const box = table.closest(".table-scroll").getBoundingClientRect();
        const right = Math.min(box.right, document.documentElement.clientWidth);
        return [...table.tHead.rows[0].cells]
            .filter((cell) => cell.getBoundingClientRect().right > right + 0.5)
            .map((cell) => cell.textContent.trim());
    }""")


@pytest.mark.parametrize("window", WINDOWS.values(), ids=WINDOWS.keys())
def test_no_column_of_the_tasks_or_the_queues_is_cut(
    browser: Browser, fresh_settings, own_services, console_errors: list[str],
    window: dict[str, int],
) -> None:
    api = own_services.start_api(fresh_settings)  # no workers: the test plays them, queues fill up
    numbers = play_the_widest_rows(api)
    with live_page(browser, api.base_url, console_errors, viewport=window) as page:
        for number in numbers:
            expect(row(page, number)).to_be_visible()
        expect(page.locator("#task-rows small.tries")).to_contain_text("попытка 2 из 4")
        expect(page.locator("#task-rows small.redelivered")).to_have_text("доставлена повторно ×2")
        # Messages wait in test_direct and celery: each row has its "Очистить" button.
        expect(page.locator("#queue-rows button")).to_have_count(2, timeout=10 * SECOND)
        assert cut_columns(page, "table.tasks") == []
        assert cut_columns(page, "table.queues") == []
        assert page.evaluate("document.documentElement.scrollWidth") <= window["width"]
